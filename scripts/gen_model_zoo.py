"""Render README.md's model-zoo section from configs/model_zoo.yml
(``paddleseg_ctx.zoo_readme``).

    python scripts/gen_model_zoo.py          # rewrite the section in README.md
    python scripts/gen_model_zoo.py --check  # exit 1 if README.md is stale
"""
import sys

from paddleseg_ctx.zoo_readme import main

if __name__ == '__main__':
    sys.exit(main())
