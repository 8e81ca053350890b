"""Speed of ISNet's semantic-level centres: the vectorised form of
``paddleseg_ctx.models.isnet.semantic_centres`` against sssegmentation's loop
over images and classes (written here in Paddle, as the baseline).

Both get the same features and stage-1 logits; runs are interleaved
(vectorised, loop, vectorised, ...) so machine load hits both alike.  Prints
the median latency of each and the ratio loop / vectorised, for stage-1 maps
where every class is present (random logits) and where a few are (blobs of
``--present`` classes, as in a real scene).

    OMP_NUM_THREADS=1 python scripts/bench_slc.py --repeats 7
"""
import argparse
import statistics
import time

import numpy as np
import paddle
import paddle.nn.functional as F

from paddleseg_ctx.models.isnet import semantic_centres


def loop_centres(feats, logits):
    """sssegmentation's loop: per image, per class present, boolean masks."""
    n, c, h, w = feats.shape
    k = logits.shape[1]
    out = []
    for b in range(n):
        feats_b = feats[b].reshape([c, -1]).transpose([1, 0])
        logits_b = logits[b].reshape([k, -1]).transpose([1, 0])
        label = logits_b.argmax(1)
        centres_b = paddle.zeros_like(feats_b)
        for cls in range(k):
            mask = label == cls
            if int(mask.sum()) == 0:
                continue
            weight = F.softmax(logits_b[:, cls][mask], axis=0)
            centre = (feats_b[mask] * weight.unsqueeze(-1)).sum(0)
            centres_b = paddle.where(
                mask.unsqueeze(-1), centre.expand_as(centres_b), centres_b)
        out.append(centres_b.transpose([1, 0]).reshape([c, h, w]))
    return paddle.stack(out)


def stage1_logits(num_classes, h, w, present, rng):
    """Random logits (present=0: every class wins somewhere), or logits
    whose argmax forms blobs of ``present`` classes."""
    if not present:
        return rng.normal(0, 3, (1, num_classes, h, w)).astype('float32')
    classes = rng.choice(num_classes, present, replace=False)
    coarse = rng.choice(classes, (max(h // 8, 1), max(w // 8, 1)))
    label = np.kron(coarse, np.ones((8, 8), dtype=int))[:h, :w]
    logits = rng.normal(0, 1, (1, num_classes, h, w)).astype('float32')
    np.put_along_axis(logits[0], label[None], 8.0, axis=0)
    return logits


def timed(fn, *args):
    start = time.perf_counter()
    fn(*args)
    return time.perf_counter() - start


def compare(h, w, channels, num_classes, present, repeats, backward, rng):
    """Median latency of the vectorised and the loop form on one layout,
    interleaved.  Returns a dict: size, present (classes present), ms of
    each, ratio loop / vectorised, max_diff between their outputs."""
    feats = paddle.to_tensor(
        rng.normal(0, 1, (1, channels, h, w)).astype('float32'),
        stop_gradient=not backward)
    logits = paddle.to_tensor(
        stage1_logits(num_classes, h, w, present, rng),
        stop_gradient=not backward)

    def run(fn):
        if backward:
            fn(feats, logits).sum().backward()
        else:
            with paddle.no_grad():
                fn(feats, logits)

    diff = float((semantic_centres(feats, logits) -
                  loop_centres(feats, logits)).abs().max())
    times = {semantic_centres: [], loop_centres: []}
    for _ in range(repeats):
        for fn in times:
            times[fn].append(timed(run, fn))
    vec = statistics.median(times[semantic_centres]) * 1e3
    loop = statistics.median(times[loop_centres]) * 1e3
    return {'size': '{}x{}'.format(h, w),
            'present': len(np.unique(logits.numpy().argmax(1))),
            'vectorised_ms': vec, 'loop_ms': loop, 'ratio': loop / vec,
            'max_diff': diff}


def main():
    parser = argparse.ArgumentParser(description=__doc__.split('\n')[0])
    parser.add_argument('--sizes', nargs='+', default=['64x64', '64x128'],
                        help='feature-map sizes HxW (1/8 of the image)')
    parser.add_argument('--channels', type=int, default=512)
    parser.add_argument('--num_classes', type=int, default=150)
    parser.add_argument('--present', type=int, default=20,
                        help='classes present in the blob layout')
    parser.add_argument('--repeats', type=int, default=7)
    parser.add_argument('--backward', action='store_true',
                        help='time forward + backward (training)')
    args = parser.parse_args()

    print('semantic-level centres, 1x{}xHxW features, {} classes, {}, median '
          'of {} interleaved runs'.format(
              args.channels, args.num_classes,
              'forward+backward' if args.backward else 'forward',
              args.repeats))
    print('{:>8s} {:>10s} {:>14s} {:>9s} {:>7s} {:>10s}'.format(
        'HxW', 'present', 'vectorised ms', 'loop ms', 'ratio', 'max diff'))
    rng = np.random.RandomState(0)
    for size in args.sizes:
        h, w = (int(v) for v in size.split('x'))
        for present in (0, args.present):
            r = compare(h, w, args.channels, args.num_classes, present,
                        args.repeats, args.backward, rng)
            print('{:>8s} {:>10d} {:>14.1f} {:>9.1f} {:>6.1f}x {:>10.2g}'
                  .format(r['size'], r['present'], r['vectorised_ms'],
                          r['loop_ms'], r['ratio'], r['max_diff']))


if __name__ == '__main__':
    main()
