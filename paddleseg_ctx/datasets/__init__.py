"""datasets."""
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset  # noqa: F401
