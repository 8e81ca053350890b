"""Transforms registered into ``paddleseg.cvlibs.manager.TRANSFORMS``:
training transforms of the mmsegmentation / sssegmentation recipes, and the
test-time resize of their evaluation protocols."""
from paddleseg_ctx.transforms.test_time import ResizeByImgScale  # noqa: F401
from paddleseg_ctx.transforms.training import (  # noqa: F401
    CtxCenterPadding, CtxPhotoMetricDistortion, CtxRandomCrop,
    CtxRandomHorizontalFlip, CtxRandomResize, CtxRandomRotation)
