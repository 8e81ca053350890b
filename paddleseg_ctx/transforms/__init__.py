"""transforms."""
from paddleseg_ctx.transforms import test_time  # noqa: F401  (registration)
