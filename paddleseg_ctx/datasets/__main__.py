"""``python -m paddleseg_ctx.datasets --root DIR ...``: write the synthetic data set."""
from paddleseg_ctx.datasets.synthetic import main

main()
