"""``python -m paddleseg_ctx.reproduce``: Reproduce a model-zoo row (see paddleseg_ctx.cli.reproduce)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.reproduce import main

if __name__ == '__main__':
    run(main)
