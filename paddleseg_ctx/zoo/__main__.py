"""``python -m paddleseg_ctx.zoo``: list, show and download the model zoo's
rows (see paddleseg_ctx.cli.zoo)."""
from paddleseg_ctx.cli.zoo import main
from paddleseg_ctx.errors import run

if __name__ == '__main__':
    run(main)
