"""How many logits each model family returns in training and in eval: the
rule in ``paddleseg_ctx/models/base.py``, checked against what each family's
reference returns.

Training returns one logit per loss term: ``[main, aux]`` for PaddleSeg's
GCNet, GINet and ISANet, ``[stage2, stage1, aux]`` for sssegmentation's
ISNet (without the aux head, the last entry goes).  In eval PaddleSeg's
models return the same list, sssegmentation's ISNet only ``[stage2]``; an
auxiliary head whose logits are not returned must not run.
"""
import paddle
import pytest

from paddleseg_ctx.testing.families import FAMILIES, build_light

K = 5

# family: (training logits without the aux head, eval returns the training
# list, attribute path of the aux head)
REFERENCE = {
    'gcnet': (1, True, 'head.auxlayer'),
    'ginet': (1, True, 'auxlayer'),
    'isanet': (1, True, 'head.aux'),
    'isnet': (2, False, 'head.aux'),
}


def _aux_head(model, path):
    """The aux head at ``path``, or None (not built without the aux loss)."""
    layer = model
    for name in path.split('.'):
        layer = getattr(layer, name, None)
    return layer


@pytest.mark.parametrize('aux', [True, False], ids=['aux', 'noaux'])
@pytest.mark.parametrize('name', sorted(FAMILIES))
def test_logits_in_training_and_eval(name, aux):
    without_aux, extra_in_eval, aux_path = REFERENCE[
        FAMILIES[name].family.lower()]
    paddle.seed(0)
    model = build_light(name, K, enable_auxiliary_loss=aux)
    assert type(model).EXTRA_LOGITS_IN_EVAL is extra_in_eval

    runs = []
    head = _aux_head(model, aux_path)
    if head is not None:
        head.register_forward_post_hook(lambda *args: runs.append(1))
    x = paddle.uniform([2, 3, 33, 41], min=-1, max=1)

    model.train()
    train_logits = model(x)
    assert len(train_logits) == without_aux + aux
    assert len(runs) == aux
    assert all(logit.shape == [2, K, 33, 41] for logit in train_logits)

    model.eval()
    with paddle.no_grad():
        eval_logits = model(x)
        raw_logits = model.raw_logits(x)
    expected = len(train_logits) if extra_in_eval else 1
    assert len(eval_logits) == len(raw_logits) == expected
    # The aux head runs in eval only when its logits are returned.
    assert len(runs) == aux * (1 + 2 * extra_in_eval)
