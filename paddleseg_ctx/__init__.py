"""paddleseg_ctx: GINet, GCNet, ISANet and ISNet as PaddleSeg components.

``import paddleseg_ctx`` is the only step needed: it applies the PaddleSeg-2.8
compatibility fixes (``paddleseg_ctx.compat``) and registers every component of
the package into PaddleSeg's managers under names that never shadow a stock
component.
"""
from paddleseg_ctx.version import __version__
from paddleseg_ctx import compat

compat.apply_all()

from paddleseg_ctx import (backbones, datasets, transforms, models)  # noqa: E402,F401  (registration)
