"""``python -m paddleseg_ctx.train``: Train a model (see paddleseg_ctx.cli.train)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.train import main

if __name__ == '__main__':
    run(main)
