"""One process of ``paddle.distributed.launch`` running ``paddleseg_ctx.train``
as the two-rank tests need it (tests/test_ranks.py)::

    launch --nproc_per_node 2 tests/rank_process.py [--nan_loss R:N]
        [--nan_weights R:N] <paddleseg_ctx.train arguments>

* Every rank starts from its own random state, and the same one in every run:
  the generators are seeded with the rank, and the run seed a rank would draw
  without ``--seed`` (``random.SystemRandom``) is fixed per rank too.  So the
  ranks differ as separate processes (or GPUs) do, yet a run can be repeated,
  and a rank that used another rank's state or seed changes the weights.
* ``--nan_loss R:N``: rank R's loss is NaN at its N-th loss computation.
* ``--nan_weights R:N``: rank R's first parameter becomes NaN after its N-th
  optimizer step (rank 0 is the one that saves).
"""
import importlib
import os
import random
import sys

import numpy as np
import paddle

RANK = int(os.environ.get('PADDLE_TRAINER_ID', '0'))


class _RankRandom(random.Random):
    """``random.SystemRandom`` made repeatable: one stream per rank."""

    def __init__(self, x=None):
        super().__init__(1000 + RANK)


def _split(spec):
    rank, count = spec.split(':')
    return int(rank), int(count)


def _nan_loss(rank, count):
    module = importlib.import_module('paddleseg.core.train')  # not the function
    original = module.loss_computation
    calls = [0]

    def loss_computation(logits_list, labels, edges, losses):
        loss_list = original(logits_list, labels, edges, losses)
        calls[0] += 1
        if RANK == rank and calls[0] == count:
            loss_list = [loss * float('nan') for loss in loss_list]
        return loss_list

    module.loss_computation = loss_computation


def _nan_weights(rank, count):
    original = paddle.optimizer.Optimizer.step
    calls = [0]

    def step(self):
        original(self)
        calls[0] += 1
        if RANK == rank and calls[0] == count:
            param = self._parameter_list[0]
            with paddle.no_grad():
                param.set_value(paddle.full_like(param, float('nan')))

    paddle.optimizer.Optimizer.step = step


def main(argv):
    injections = {'--nan_loss': _nan_loss, '--nan_weights': _nan_weights}
    while argv and argv[0] in injections:
        injections[argv[0]](*_split(argv[1]))
        argv = argv[2:]
    random.SystemRandom = _RankRandom
    random.seed(10 + RANK)
    np.random.seed(20 + RANK)
    paddle.seed(30 + RANK)

    from paddleseg_ctx.cli import train
    from paddleseg_ctx.errors import run
    run(train.main, argv)


if __name__ == '__main__':
    main(sys.argv[1:])
