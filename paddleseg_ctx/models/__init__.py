"""Models registered into ``paddleseg.cvlibs.manager.MODELS``."""
from paddleseg_ctx.models.base import ContextSegModel
from paddleseg_ctx.models.gcnet import CtxGCNet
from paddleseg_ctx.models.ginet import CtxGINet
from paddleseg_ctx.models.isanet import CtxISANet
from paddleseg_ctx.models.isnet import CtxISNet
