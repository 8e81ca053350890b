"""Speed of our models against PaddleSeg 2.8's, measured side by side.

Both models of a pair get the same weights and input; runs are interleaved
(ours, PaddleSeg's, ours, ...) so machine load hits both alike.  Prints median
eval-mode forward latency per model and the ratio ours / PaddleSeg's.
With --deployed, also times our exported program in Paddle Inference (PaddleSeg's
ISANet cannot be exported on Paddle 3.3.1 and its GINet's exported program
does not load, so there is nothing of theirs to compare with there).

    OMP_NUM_THREADS=2 python scripts/benchmark.py --size 512 512 --repeats 5
"""
import argparse
import os
import statistics
import tempfile
import time

import numpy as np
import paddle
from paddleseg.models import GCNet, GINet, ISANet
from paddleseg.models.backbones import ResNet50_vd

import paddleseg_ctx  # noqa: F401
from paddleseg_ctx.deploy import InferenceRunner, save_inference_model
from paddleseg_ctx.models import CtxGCNet, CtxGINet, CtxISANet

PAIRS = {
    'GINet': (CtxGINet, GINet),
    'ISANet': (CtxISANet, ISANet),
    'GCNet': (CtxGCNet, GCNet),
}


def timed(fn, x):
    start = time.perf_counter()
    fn(x)
    return time.perf_counter() - start


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--models', nargs='+', default=sorted(PAIRS),
                        choices=sorted(PAIRS))
    parser.add_argument('--size', nargs=2, type=int, default=(512, 512),
                        metavar=('W', 'H'))
    parser.add_argument('--num_classes', type=int, default=19)
    parser.add_argument('--repeats', type=int, default=5)
    parser.add_argument('--deployed', action='store_true',
                        help='also time our exported program')
    args = parser.parse_args()

    w, h = args.size
    x = paddle.uniform([1, 3, h, w], min=-1, max=1)
    print('eval forward, ResNet50_vd OS8, 1x3x{}x{}, median of {} runs'.format(
        h, w, args.repeats))
    print('{:8s} {:>10s} {:>12s} {:>7s} {:>12s}'.format(
        'model', 'ours ms', 'PaddleSeg ms', 'ratio', 'deployed ms'))
    for name in args.models:
        ours_cls, theirs_cls = PAIRS[name]
        theirs = theirs_cls(args.num_classes, ResNet50_vd(output_stride=8))
        ours = ours_cls(args.num_classes, ResNet50_vd(output_stride=8))
        ours.set_state_dict(theirs.state_dict())
        ours.eval()
        theirs.eval()
        times = {'ours': [], 'theirs': []}
        with paddle.no_grad():
            for model in (ours, theirs):  # warm-up
                model(x)
            for _ in range(args.repeats):
                times['ours'].append(timed(ours, x))
                times['theirs'].append(timed(theirs, x))
        ours_ms = statistics.median(times['ours']) * 1e3
        theirs_ms = statistics.median(times['theirs']) * 1e3
        deployed = '-'
        if args.deployed:
            with tempfile.TemporaryDirectory() as tmp:
                runner = InferenceRunner(
                    *save_inference_model(ours, tmp, output_op='none'),
                    cpu_threads=int(os.environ.get('OMP_NUM_THREADS', 1)))
                image = x.numpy()
                runner(image)
                deployed = '{:.0f}'.format(statistics.median(
                    timed(runner, image) for _ in range(args.repeats)) * 1e3)
        print('{:8s} {:10.0f} {:12.0f} {:7.2f} {:>12s}'.format(
            name, ours_ms, theirs_ms, ours_ms / theirs_ms, deployed))


if __name__ == '__main__':
    main()
