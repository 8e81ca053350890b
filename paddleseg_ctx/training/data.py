"""Training data in an order and with augmentations that a resumed run
repeats, and the random state of a run.

PaddleSeg shuffles with ``DistributedBatchSampler`` (order = f(epoch)) and
draws augmentations from the global ``random``/``numpy`` generators of
whichever process loads the sample, so after a restart both the position in
the epoch and the augmentations are lost.  Here every sample is augmented
under its own seed, derived from (run seed, epoch, index), and the sampler can
start at any iteration: the data stream depends on nothing but the run seed
and the iteration, whatever ``num_workers`` is.
"""
import contextlib
import random
import threading

import numpy as np
import paddle
from paddleseg.utils import logger

__all__ = ['SeededDataset', 'ResumableBatchSampler', 'sample_seed',
           'rng_state', 'set_rng_state']

# With num_workers=0 Paddle loads batches in a thread of the training process:
# a sample's seeded transforms and the training's state save/restore must not
# interleave on the global generators.
_GLOBAL_RNG = threading.Lock()


def sample_seed(seed, epoch, index):
    """The seed of sample ``index`` in ``epoch`` of a run seeded ``seed``."""
    return int(np.random.SeedSequence([seed & 0xFFFFFFFF, epoch, index])
               .generate_state(1)[0])


@contextlib.contextmanager
def _seeded(seed):
    """Seed ``random`` and ``numpy`` for the block, then give the caller back
    its own generator states (in the main process, loading a sample must not
    move the training's random streams)."""
    with _GLOBAL_RNG:
        py_state, np_state = random.getstate(), np.random.get_state()
        random.seed(seed)
        np.random.seed(seed)
        try:
            yield
        finally:
            random.setstate(py_state)
            np.random.set_state(np_state)


def rng_state():
    """Python, numpy and Paddle random states of the training process."""
    with _GLOBAL_RNG:
        state = {'python': random.getstate(), 'numpy': np.random.get_state(),
                 'paddle_cpu': paddle.get_rng_state('cpu')}
    device = paddle.get_device()
    if device != 'cpu':
        state['paddle_device'] = (device, paddle.get_rng_state())
    return state


def set_rng_state(state):
    """Restore a state taken by :func:`rng_state`."""
    with _GLOBAL_RNG:
        random.setstate(state['python'])
        np.random.set_state(state['numpy'])
    paddle.set_rng_state(state['paddle_cpu'], 'cpu')
    device, device_state = state.get('paddle_device', (None, None))
    if device == paddle.get_device():
        paddle.set_rng_state(device_state)
    elif device is not None or paddle.get_device() != 'cpu':
        logger.warning('The checkpoint was trained on {}, this run uses {}: '
                       'its device random state is not restored.'.format(
                           device or 'cpu', paddle.get_device()))


class SeededDataset(paddle.io.Dataset):
    """``dataset`` read with keys ``(index, epoch)`` given by
    :class:`ResumableBatchSampler`; each sample's transforms run under
    :func:`sample_seed`.

    Args:
        dataset (paddle.io.Dataset): The training set.
        seed (int): Run seed.

    Attributes:
        start_iter (int): Iterations already trained (set on resume); the
            sampler starts after them.
        batches_per_epoch (int|None): Set by the sampler.
    """

    def __init__(self, dataset, seed):
        super().__init__()
        self.dataset = dataset
        self.seed = seed
        self.start_iter = 0
        self.batches_per_epoch = None

    def __len__(self):
        return len(self.dataset)

    def __getitem__(self, key):
        index, epoch = key
        with _seeded(sample_seed(self.seed, epoch, index)):
            return self.dataset[index]


class ResumableBatchSampler(paddle.io.DistributedBatchSampler):
    """PaddleSeg's sampler (same order, same rank split) that, for a
    :class:`SeededDataset`, starts at ``dataset.start_iter`` (epoch and batch
    within it) and yields ``(index, epoch)`` keys.  Any other dataset is
    sampled exactly as by ``DistributedBatchSampler``."""

    def __init__(self, dataset, *args, **kwargs):
        super().__init__(dataset, *args, **kwargs)
        self._skip = 0
        if isinstance(dataset, SeededDataset):
            expected = dataset.batches_per_epoch
            if expected is not None and expected != len(self):
                logger.warning(
                    'The checkpoint was trained with {} batches per epoch, '
                    'this run has {} (batch size, data or process count '
                    'changed): the data order does not continue exactly.'
                    .format(expected, len(self)))
            dataset.batches_per_epoch = len(self)
            self.epoch, self._skip = divmod(dataset.start_iter, max(len(self), 1))

    def __iter__(self):
        if not isinstance(self.dataset, SeededDataset):
            yield from super().__iter__()
            return
        epoch, skip = self.epoch, self._skip  # super().__iter__ then counts epoch on
        self._skip = 0
        for position, batch in enumerate(super().__iter__()):
            if position >= skip:
                yield [(index, epoch) for index in batch]
