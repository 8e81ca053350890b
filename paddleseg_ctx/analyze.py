"""``python -m paddleseg_ctx.analyze``: model cost, confusion matrix and
worst images (see paddleseg_ctx.cli.analyze)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.analyze import main

if __name__ == '__main__':
    run(main)
