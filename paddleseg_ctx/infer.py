"""``python -m paddleseg_ctx.infer``: Segment images with an exported model (see paddleseg_ctx.cli.infer)."""
from paddleseg_ctx.cli.infer import main

if __name__ == '__main__':
    main()
