"""Write the Paddle 2.6 files of tests/test_safe_load.py.

Run with Paddle 2.6.2 and numpy 1.x (in an environment of their own):

    python -m venv /tmp/paddle26 && /tmp/paddle26/bin/pip install paddlepaddle==2.6.2 'numpy<2'
    /tmp/paddle26/bin/python tests/data/paddle26/make_files.py

``expected.npz`` holds the values as numpy arrays (``<object>.<key>``), so
the test checks them independently of any loader.
"""
import os

import numpy as np
import paddle

HERE = os.path.dirname(os.path.abspath(__file__))
assert paddle.__version__.startswith('2.6'), paddle.__version__

paddle.seed(0)
model = paddle.nn.Sequential(paddle.nn.Linear(3, 4), paddle.nn.BatchNorm1D(4))
schedule = paddle.optimizer.lr.PolynomialDecay(0.01, 100, power=0.9)
momentum = paddle.optimizer.Momentum(learning_rate=schedule, parameters=model.parameters())
model(paddle.randn([2, 3])).mean().backward()
momentum.step()
schedule.step()

objects = {
    'state_dict': model.state_dict(),
    'momentum': momentum.state_dict(),
    'nested': {'model': model.state_dict(), 'iter': 3},
    'tensor': {'t': paddle.arange(6, dtype='float32').reshape([2, 3])},
}
files = [('state_dict', 2), ('state_dict', 4), ('momentum', 4), ('nested', 2),
         ('tensor', 4)]
expected = {}
for name, protocol in files:
    paddle.save(objects[name], os.path.join(HERE, '{}_p{}.pdparams'.format(name, protocol)),
                protocol=protocol)
for name in ('state_dict', 'momentum', 'tensor'):
    for key, value in objects[name].items():
        if isinstance(value, paddle.Tensor):
            expected['{}.{}'.format(name, key)] = value.numpy()
np.savez(os.path.join(HERE, 'expected.npz'), **expected)
print('Paddle', paddle.__version__, 'numpy', np.__version__, 'wrote', len(files), 'files')
