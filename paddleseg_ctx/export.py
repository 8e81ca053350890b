"""``python -m paddleseg_ctx.export``: Export an inference model (see paddleseg_ctx.cli.export)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.export import main

if __name__ == '__main__':
    run(main)
