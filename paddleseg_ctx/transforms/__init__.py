"""Transforms registered into ``paddleseg.cvlibs.manager.TRANSFORMS``."""
from paddleseg_ctx.transforms.training import (  # noqa: F401
    CtxCenterPadding, CtxPhotoMetricDistortion, CtxRandomCrop,
    CtxRandomHorizontalFlip, CtxRandomResize, CtxRandomRotation)
