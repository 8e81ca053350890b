"""``python -m paddleseg_ctx.predict``: Predict and visualise images (see paddleseg_ctx.cli.predict)."""
from paddleseg_ctx.errors import run
from paddleseg_ctx.cli.predict import main

if __name__ == '__main__':
    run(main)
