"""Where a model's time and memory go, next to PaddleSeg 2.8's own class.

Builds ours and PaddleSeg's model (ResNet50_vd, output stride 8, random
weights) and runs them interleaved (ours, PaddleSeg, ours, ...) so machine
load hits both alike.  Prints, per variant, the median time of an eval
forward or of a training step (forward, backward, Momentum step), the peak
host memory allocated above the resting state during it, and the time of
every sublayer down to ``--depth`` (forward hooks; nested rows include their
children, and a training step's backward is not attributed to sublayers).
ISNet has no PaddleSeg class, so only ours runs.

    OMP_NUM_THREADS=1 python scripts/profile_model.py gcnet --size 512
    OMP_NUM_THREADS=1 python scripts/profile_model.py ginet --train \
        --batch 2 --size 256
"""
import argparse
import collections
import statistics
import time

import paddle
import paddle.nn.functional as F
import paddleseg.models as paddleseg_models
from paddle.base import core
from paddleseg.cvlibs import manager
from paddleseg.models.backbones import ResNet50_vd

import paddleseg_ctx  # noqa: F401  (registers our models)
from paddleseg_ctx.testing.families import FAMILIES

# Model name: (ours, PaddleSeg's or None): the PaddleSeg-recipe form of each
# family in the family table.
MODELS = {
    name: (manager.MODELS[f.type],
           getattr(paddleseg_models, f.paddleseg) if f.paddleseg else None)
    for name, f in FAMILIES.items() if not f.form
}


def sublayer_timer(model, depth):
    """Accumulate wall time per sublayer whose name has < ``depth`` dots."""
    times = collections.defaultdict(float)
    starts = {}
    for name, layer in model.named_sublayers():
        if name.count('.') >= depth:
            continue

        def pre(layer, inputs, name=name):
            starts[name] = time.perf_counter()

        def post(layer, inputs, outputs, name=name):
            times[name] += time.perf_counter() - starts[name]

        layer.register_forward_pre_hook(pre)
        layer.register_forward_post_hook(post)
    return times


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    parser.add_argument('model', choices=sorted(MODELS))
    parser.add_argument('--size', type=int, default=512)
    parser.add_argument('--batch', type=int, default=1)
    parser.add_argument('--train', action='store_true',
                        help='time a training step instead of an eval forward')
    parser.add_argument('--repeats', type=int, default=3)
    parser.add_argument('--num_classes', type=int, default=19,
                        help='classes of the model (Cityscapes: 19, Pascal '
                        'Context: 59, ADE20K: 150)')
    parser.add_argument('--depth', type=int, default=2,
                        help='sublayer name depth of the table')
    parser.add_argument(
        '--min-share', type=float, default=0.01,
        help='leave out sublayers under this share of the total')
    args = parser.parse_args()

    ours_cls, theirs_cls = MODELS[args.model]
    num_classes = args.num_classes
    variants = {}
    for name, cls in (('ours', ours_cls), ('paddleseg', theirs_cls)):
        if cls is not None:
            paddle.seed(0)
            model = cls(num_classes, ResNet50_vd(output_stride=8))
            model.train(args.train)
            optimizer = paddle.optimizer.Momentum(
                0.001, parameters=model.parameters()) if args.train else None
            variants[name] = (model, optimizer)

    x = paddle.rand([args.batch, 3, args.size, args.size])
    label = paddle.randint(0, num_classes, [args.batch, args.size, args.size])

    def run(model, optimizer):
        if optimizer is None:
            with paddle.no_grad():
                model(x)
            return
        loss = sum(F.cross_entropy(logit, label, axis=1) for logit in model(x))
        loss.backward()
        optimizer.step()
        optimizer.clear_grad()

    for model, optimizer in variants.values():
        run(model, optimizer)  # warm-up: allocator, kernels
    timers = {name: sublayer_timer(model, args.depth)
              for name, (model, _) in variants.items()}
    totals = {name: [] for name in variants}
    peaks = {name: [] for name in variants}
    for _ in range(args.repeats):
        for name, (model, optimizer) in variants.items():
            resting = core.host_memory_stat_current_value('Allocated', 0)
            core.host_memory_stat_reset_peak_value('Allocated', 0)
            start = time.perf_counter()
            run(model, optimizer)
            totals[name].append(time.perf_counter() - start)
            peaks[name].append(
                core.host_memory_stat_peak_value('Allocated', 0) - resting)

    what = 'training step' if args.train else 'eval forward'
    print('{} {}, input {}x3x{}x{}, {} repeats'.format(
        args.model, what, args.batch, args.size, args.size, args.repeats))
    for name in variants:
        total = statistics.median(totals[name])
        print('\n{}: median {:.3f} s (runs {}), peak {:.0f} MiB above '
              'resting'.format(name, total,
                               ' '.join('{:.2f}'.format(t)
                                        for t in totals[name]),
                               max(peaks[name]) / 2**20))
        rows = sorted(timers[name].items(), key=lambda row: -row[1])
        for layer, seconds in rows:
            seconds /= args.repeats
            if seconds >= args.min_share * total:
                print('  {:<44} {:8.3f} s {:6.1%}'.format(
                    layer, seconds, seconds / total))
    if len(variants) == 2:
        ratio = (statistics.median(totals['paddleseg']) /
                 statistics.median(totals['ours']))
        print('\nspeed ours / PaddleSeg: {:.3f}x'.format(ratio))


if __name__ == '__main__':
    main()
