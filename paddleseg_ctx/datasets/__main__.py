"""``python -m paddleseg_ctx.datasets {prepare,check,synthetic} ...``
(``--root DIR ...`` alone: synthetic); see ``command.py``."""
from paddleseg_ctx.datasets.command import main
from paddleseg_ctx.errors import run

run(main)
