"""``python -m paddleseg_ctx.infer``: Segment images with an exported model (see paddleseg_ctx.cli.infer)."""
from paddleseg_ctx.cli.infer import main
from paddleseg_ctx.errors import run

if __name__ == '__main__':
    run(main)
