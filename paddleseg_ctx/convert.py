"""``python -m paddleseg_ctx.convert``: PyTorch checkpoint to Paddle weights (see paddleseg_ctx.cli.convert)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.convert import main

if __name__ == '__main__':
    run(main)
