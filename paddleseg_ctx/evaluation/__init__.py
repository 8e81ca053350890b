"""Evaluation protocols of the published tables (PaddleSeg, mmsegmentation,
sssegmentation) and the code that runs them."""
from paddleseg_ctx.evaluation.protocol import (COLUMNS, Protocol, describe,
                                               protocol_for)
from paddleseg_ctx.evaluation.val import evaluate

__all__ = ['COLUMNS', 'Protocol', 'describe', 'evaluate', 'protocol_for']
