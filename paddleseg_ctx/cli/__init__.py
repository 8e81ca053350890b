"""Command-line tools mirroring PaddleSeg 2.8's ``tools/`` scripts.

Run them as ``python -m paddleseg_ctx.{train,val,predict,export}``; they take
PaddleSeg's flags plus ``--opts KEY=VALUE ...`` (see ``common.py``).
"""
