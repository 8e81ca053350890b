"""``python -m paddleseg_ctx.val``: Evaluate a model (see paddleseg_ctx.cli.val)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.val import main

if __name__ == '__main__':
    run(main)
