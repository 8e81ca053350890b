"""What every model of this package shares.

``ContextSegModel`` selects the backbone stages a head needs, runs the head,
resizes every logit map to the input size and loads weights.  A model only
writes its context head (``decode``), from the layers in
:mod:`paddleseg_ctx.models.heads`.  State-dict key names follow the
checkpoints each model must load, which is why each model attaches its
auxiliary head at its own attribute path.

What a model returns
--------------------
``model(x)`` and ``model.raw_logits(x)`` return a list of logits, the main
one first, then the *extra* logits that only training uses: a family's
intermediate-stage logits (ISNet's stage-1 decoder), then the auxiliary FCN
head's when ``enable_auxiliary_loss``.

* Training: ``[main, *extra]``, one entry per loss term, in the order of the
  loss config's ``types`` and ``coef`` (PaddleSeg's train loop requires the
  lengths to match).
* Evaluation: the same list where the class sets ``EXTRA_LOGITS_IN_EVAL``
  (the default: PaddleSeg's GCNet, GINet and ISANet return their aux logits
  in eval, and the parity tests compare them there); otherwise ``[main]``,
  and the extra heads do not run (sssegmentation's ISNet in test mode).

Everything that evaluates or deploys reads the main logit only: PaddleSeg's
val/predict (``logits[0]``), :mod:`paddleseg_ctx.evaluation` and the export
wrapper, so an exported model outputs the main logit alone.
"""
import paddle
import paddle.nn as nn
import paddle.nn.functional as F

from paddleseg_ctx.weights import load_model_weights

__all__ = ['ContextSegModel']


class ContextSegModel(nn.Layer):
    """Backbone + context head (+ auxiliary FCN head), logits resized to input.

    Args:
        num_classes (int): Number of classes.
        backbone (nn.Layer): Backbone exposing ``feat_channels``.
        backbone_indices (sequence[int]): Backbone outputs given to
            ``decode``, one per name in ``BACKBONE_FEATURES``; their channels
            are in ``self.in_channels``.
        enable_auxiliary_loss (bool): Build the auxiliary head and return its
            logits (see the module docstring for when).
        align_corners (bool): ``align_corners`` of the final bilinear resize.
        align_mode (int): ``align_mode`` of that resize when
            ``align_corners`` is False (0: half-pixel, 1: asymmetric).
        pretrained (str|None): Path or URL of whole-model weights.
    """

    # The backbone outputs ``decode`` reads, one name per backbone index.
    BACKBONE_FEATURES = ()
    # Whether eval returns the extra logits too (module docstring).
    EXTRA_LOGITS_IN_EVAL = True

    def __init__(self,
                 num_classes,
                 backbone,
                 *,
                 backbone_indices,
                 enable_auxiliary_loss=True,
                 align_corners=False,
                 align_mode=0,
                 pretrained=None):
        if len(backbone_indices) != len(self.BACKBONE_FEATURES):
            raise ValueError(
                '{} needs {} backbone_indices ({}), got {}.'.format(
                    type(self).__name__, len(self.BACKBONE_FEATURES),
                    ', '.join(self.BACKBONE_FEATURES), list(backbone_indices)))
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.backbone_indices = list(backbone_indices)
        self.in_channels = [
            backbone.feat_channels[i] for i in self.backbone_indices
        ]
        self.enable_auxiliary_loss = enable_auxiliary_loss
        self.align_corners = align_corners
        self.align_mode = align_mode
        self.pretrained = pretrained

    def decode(self, feats, extra):
        """Map the selected backbone features to ``[main, *extra]`` logits,
        or to ``[main]`` when ``extra`` is False (then the extra heads must
        not run).

        ``feats`` is a list of the head's own; emptying it frees the features
        the head no longer needs before its large convolutions run.
        """
        raise NotImplementedError

    def raw_logits(self, x):
        """``[main, *extra]`` logits at feature resolution, before the resize
        to the input size (protocols that resize once from low resolution,
        like sssegmentation's, start from these)."""
        feats = self.backbone(x)
        # Rebinding frees the stages no head reads (eval peak memory).
        feats = [feats[i] for i in self.backbone_indices]
        return self.decode(feats,
                           self.training or self.EXTRA_LOGITS_IN_EVAL)

    def forward(self, x):
        logits = self.raw_logits(x)
        size = paddle.shape(x)[2:]
        return [
            F.interpolate(
                logit,
                size,
                mode='bilinear',
                align_corners=self.align_corners,
                align_mode=self.align_mode) for logit in logits
        ]

    def init_weight(self):
        """Load ``pretrained`` (call at the end of a subclass ``__init__``)."""
        if self.pretrained is not None:
            load_model_weights(self, self.pretrained)
