"""Models registered into ``paddleseg.cvlibs.manager.MODELS``."""
from paddleseg_ctx.models.base import ContextSegModel
