"""Two-process data-parallel training on CPU via paddle.distributed.launch.

On a CPU-only Paddle build ``launch --nproc_per_node 2`` starts two processes
with ``PADDLE_DISTRI_BACKEND=gloo``; PaddleSeg's ``core.train`` then wraps the
model with ``fleet.distributed_model``.  Each rank saves its own weights
(``--save_rank_weights``) so the test can compare them.  Our models on two
ranks (resume, NaN stop, every family): tests/test_ranks.py.
"""
import socket
import subprocess
import sys

import numpy as np
import paddle

from cli_utils import make_data, run, write_config


def is_bn_statistic(name):
    return name.endswith(('_mean', '_variance'))


def max_diff(a, b, keys):
    return max(float(np.abs(a[k].numpy() - b[k].numpy()).max()) for k in keys)


def train_command(config, save_dir):
    return [sys.executable, '-m', 'paddleseg_ctx.train', '--config', config,
            '--device', 'cpu', '--save_dir', str(save_dir), '--iters', '4',
            '--batch_size', '1', '--save_interval', '2', '--log_iters', '1',
            '--seed', '0', '--save_rank_weights']


def test_two_cpu_ranks_train_in_sync_on_different_data(tmp_path):
    data = make_data(tmp_path / 'data', num_train=4, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    save_dir = tmp_path / 'out'
    run([
        sys.executable, '-m', 'paddle.distributed.launch', '--nproc_per_node',
        '2', '--log_dir', str(tmp_path / 'log')
    ] + train_command(config, save_dir), timeout=240)
    log0 = (tmp_path / 'log' / 'workerlog.0').read_text()
    assert 'iter: 4/4' in log0, log0[-2000:]
    assert_trained_in_sync(save_dir)


def free_port():
    with socket.socket() as sock:
        sock.bind(('127.0.0.1', 0))
        return sock.getsockname()[1]


def test_two_nodes_on_one_host(tmp_path):
    """The multi-machine command of the README (``--master``, ``--nnodes``,
    ``--rank``), as two one-process "nodes" on 127.0.0.1."""
    data = make_data(tmp_path / 'data', num_train=4, num_val=1)
    config = write_config(tmp_path / 'fcn.yml', data)
    save_dir = tmp_path / 'out'
    master = '127.0.0.1:{}'.format(free_port())
    nodes = [subprocess.Popen(
        [sys.executable, '-m', 'paddle.distributed.launch', '--master', master,
         '--nnodes', '2', '--rank', str(rank), '--nproc_per_node', '1',
         '--log_dir', str(tmp_path / 'log{}'.format(rank))] +
        train_command(config, save_dir), stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT, text=True) for rank in (0, 1)]
    try:
        outputs = [node.communicate(timeout=300)[0] for node in nodes]
    finally:
        for node in nodes:
            node.kill()
    for node, output in zip(nodes, outputs):
        assert node.returncode == 0, output[-3000:]
    log0 = (tmp_path / 'log0' / 'workerlog.0').read_text()
    assert 'iter: 4/4' in log0, log0[-2000:]
    assert_trained_in_sync(save_dir)


def assert_trained_in_sync(save_dir):

    weights = {(rank, tag): paddle.load(str(
        save_dir / 'rank_weights' / 'rank{}_{}.pdparams'.format(rank, tag)))
               for rank in (0, 1) for tag in ('start', 'end')}
    checkpoint = paddle.load(str(save_dir / 'iter_4' / 'model.pdparams'))
    params = [k for k in checkpoint if not is_bn_statistic(k)]
    bn_stats = [k for k in checkpoint if is_bn_statistic(k)]
    assert params and bn_stats

    # Gradients are all-reduced: both ranks end with the same parameters,
    # which are the ones rank 0 saved as the checkpoint ...
    assert max_diff(weights[0, 'end'], weights[1, 'end'], params) == 0
    assert max_diff(checkpoint, weights[1, 'end'], params) == 0
    # ... and both really trained.
    for rank in (0, 1):
        assert max_diff(weights[rank, 'start'], weights[rank, 'end'],
                        params) > 1e-4
    # BatchNorm running statistics are not synchronised (no SyncBN on CPU),
    # so they differ only if the ranks saw different images.
    assert max_diff(weights[0, 'end'], weights[1, 'end'], bn_stats) > 1e-4
