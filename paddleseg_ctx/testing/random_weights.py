"""Random weights for parity checks, the same rule for Paddle and PyTorch.

BatchNorm statistics get non-trivial means and positive variances, so a model
that drops or mis-wires a BN layer cannot pass a parity test; 1-D parameters
(BN and LayerNorm affine, biases) scatter around 1 (weights) or 0 (biases);
the others are scaled by 1/sqrt(fan-in), which keeps activations finite
through deep backbones.  Needs numpy only.
"""
import numpy as np

__all__ = ['random_array', 'randomize']

# Buffer-name endings of BatchNorm statistics: Paddle's, PyTorch's.
_VARIANCE = ('_variance', 'running_var')
_MEAN = ('_mean', 'running_mean')


def random_array(name, shape, rng, flat=False):
    """A float64 array for the parameter or buffer ``name`` of ``shape``,
    drawn from ``rng``; ``flat``: draw it like a 1-D parameter whatever its
    shape (e.g. a LayerNorm weight of shape [C, 1, 1])."""
    if name.endswith(_VARIANCE):
        return rng.uniform(0.5, 1.5, shape)
    if name.endswith(_MEAN):
        return rng.normal(0, 0.1, shape)
    if flat or len(shape) <= 1:
        return rng.normal(0, 0.1, shape) + (1.0 if name.endswith('weight')
                                            else 0.0)
    fan_in = int(np.prod(shape[1:]))
    return rng.normal(0, 1.0 / np.sqrt(max(fan_in, 1)), shape)


def randomize(model, seed=0):
    """Fill every parameter and buffer of the Paddle ``model`` with random
    values (see the module docstring); returns the state dict set."""
    rng = np.random.RandomState(seed)
    state = {}
    for name, value in model.state_dict().items():
        arr = random_array(name, value.shape, rng)
        state[name] = arr.astype(str(value.numpy().dtype))
    model.set_state_dict(state)
    return state
