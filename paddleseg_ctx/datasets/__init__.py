"""datasets."""
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset  # noqa: F401
from paddleseg_ctx.datasets.cocostuff10k import CocoStuff10k  # noqa: F401
from paddleseg_ctx.datasets.lip import LIP  # noqa: F401
