"""A small synthetic scene-parsing data set, generated locally in seconds.

Every image is a textured background with a few overlapping textured shapes.
Each class has its own shape, texture and colour statistics; colours are
jittered per instance and per pixel so that neighbouring classes overlap in
colour and a model has to use texture and context, not a pixel's colour.

The files follow PaddleSeg's generic ``Dataset`` layout::

    root/images/train_0000.png   RGB image
    root/labels/train_0000.png   uint8 class ids
    root/train.txt, root/val.txt "images/x.png labels/x.png" per line
    root/labels.txt              class names, one per line (line i = id i)

so a config uses ``type: Dataset`` with ``dataset_root: <root>``,
``train_path: <root>/train.txt`` and ``val_path: <root>/val.txt``.
Generate from the command line with ``python -m paddleseg_ctx.datasets``.
"""
import os

import cv2
import numpy as np

__all__ = ['CLASSES', 'make_synthetic_dataset']

# name, shape, texture, mean RGB.  Colours are deliberately close in pairs
# (ground/moss, brick/clay, ...) so colour alone does not separate classes.
CLASSES = (
    ('ground', 'background', 'smooth', (120, 115, 95)),
    ('disc', 'circle', 'spots', (165, 95, 85)),
    ('panel', 'rectangle', 'vstripes', (85, 110, 165)),
    ('roof', 'triangle', 'checker', (150, 95, 95)),
    ('road', 'band', 'dstripes', (105, 110, 150)),
    ('moss', 'ellipse', 'grain', (115, 130, 90)),
)

COLOUR_JITTER = 25  # uniform per-instance shift of each channel
PIXEL_NOISE = 14  # std of per-pixel Gaussian noise
TEXTURE_CONTRAST = 40  # brightness swing of a texture


def _texture(kind, rng, xx, yy):
    """A ``kind`` texture over the whole grid, values in [-1, 1]."""
    h, w = xx.shape
    if kind == 'smooth':  # low-frequency blotches
        coarse = rng.uniform(-1, 1, (4, 4)).astype('float32')
        return cv2.resize(coarse, (w, h), interpolation=cv2.INTER_CUBIC)
    if kind == 'grain':  # fine, slightly blurred noise
        return cv2.GaussianBlur(
            rng.uniform(-1, 1, (h, w)).astype('float32'), (3, 3), 0) * 2
    period = rng.uniform(5, 8)
    angle = {
        'vstripes': 0.0,
        'dstripes': np.pi / 4,
    }.get(kind, rng.uniform(0, np.pi / 2))
    angle += rng.uniform(-0.2, 0.2)
    u = (xx * np.cos(angle) + yy * np.sin(angle)) * 2 * np.pi / period
    v = (-xx * np.sin(angle) + yy * np.cos(angle)) * 2 * np.pi / period
    u += rng.uniform(0, 2 * np.pi)
    if kind in ('vstripes', 'dstripes'):
        return np.sign(np.sin(u))
    if kind == 'checker':
        return np.sign(np.sin(u) * np.sin(v))
    if kind == 'spots':
        return np.where(np.cos(u) * np.cos(v) > 0.4, 1.0, -1.0)
    raise ValueError('unknown texture {!r}'.format(kind))


def _shape_mask(shape, rng, w, h):
    """A uint8 mask (1 inside) of a randomly placed ``shape``."""
    mask = np.zeros((h, w), 'uint8')
    side = min(w, h)
    cx, cy = int(rng.uniform(0.1, 0.9) * w), int(rng.uniform(0.1, 0.9) * h)
    r = int(rng.uniform(0.12, 0.25) * side)
    if shape == 'circle':
        cv2.circle(mask, (cx, cy), r, 1, -1)
    elif shape == 'ellipse':
        axes = (r, int(r * rng.uniform(0.4, 0.8)))
        cv2.ellipse(mask, (cx, cy), axes, rng.uniform(0, 180), 0, 360, 1, -1)
    elif shape == 'rectangle':
        half = (r * rng.uniform(0.6, 1.4), r * rng.uniform(0.6, 1.4))
        corners = np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half
        cv2.fillPoly(mask, [np.int32(corners + (cx, cy))], 1)
    elif shape == 'triangle':
        angles = rng.uniform(0, 2 * np.pi) + np.array([0, 2, 4]) * np.pi / 3
        angles += rng.uniform(-0.3, 0.3, 3)
        corners = np.stack([np.cos(angles), np.sin(angles)], 1) * r * 1.3
        cv2.fillPoly(mask, [np.int32(corners + (cx, cy))], 1)
    elif shape == 'band':  # a thick line crossing the image
        angle = rng.uniform(0, np.pi)
        dx, dy = np.cos(angle) * 2 * side, np.sin(angle) * 2 * side
        cv2.line(mask, (int(cx - dx), int(cy - dy)),
                 (int(cx + dx), int(cy + dy)), 1,
                 int(rng.uniform(0.1, 0.18) * side))
    else:
        raise ValueError('unknown shape {!r}'.format(shape))
    return mask.astype(bool)


def _paint(image, region, cls, rng, xx, yy):
    """Fill ``region`` of ``image`` with an instance of class ``cls``."""
    _, _, texture, colour = CLASSES[cls]
    colour = np.array(colour) + rng.uniform(-COLOUR_JITTER, COLOUR_JITTER, 3)
    pattern = _texture(texture, rng, xx, yy)[region]
    image[region] = colour + TEXTURE_CONTRAST * pattern[:, None]


def make_image(rng, size, num_classes, required_class=None, num_shapes=4):
    """One ``(image uint8 HxWx3 RGB, label uint8 HxW)`` pair.

    ``num_shapes`` random foreground shapes are drawn over the background
    (later ones occlude earlier ones); ``required_class``, if given, is drawn
    last so it is always visible.
    """
    w, h = size
    yy, xx = np.mgrid[0:h, 0:w].astype('float32')
    image = np.zeros((h, w, 3), 'float32')
    label = np.zeros((h, w), 'uint8')
    _paint(image, np.ones((h, w), bool), 0, rng, xx, yy)
    classes = list(rng.integers(1, num_classes, num_shapes))
    if required_class is not None:
        classes.append(required_class)
    for cls in classes:
        region = _shape_mask(CLASSES[cls][1], rng, w, h)
        _paint(image, region, cls, rng, xx, yy)
        label[region] = cls
    image += rng.normal(0, PIXEL_NOISE, image.shape)
    return np.clip(image, 0, 255).round().astype('uint8'), label


def make_synthetic_dataset(root,
                           num_train=200,
                           num_val=50,
                           size=(128, 128),
                           num_classes=len(CLASSES),
                           seed=0):
    """Write the data set under ``root``; return the paths a config needs.

    Image ``i`` of a split depends only on ``(seed, split, i)``, so the same
    arguments always give identical files.  Image ``i`` always shows
    foreground class ``1 + i % (num_classes - 1)``, so every class appears
    once a split has ``num_classes - 1`` images.

    Args:
        root (str): Output directory (created; existing files overwritten).
        num_train (int): Number of training images.
        num_val (int): Number of validation images.
        size (tuple[int, int]): Image ``(width, height)``.
        num_classes (int): Classes including the background, 2 to
            ``len(CLASSES)``; the first ``num_classes`` of ``CLASSES``.
        seed (int): Random seed.

    Returns:
        dict: ``dataset_root``, ``train_path``, ``val_path``, ``num_classes``.
    """
    if not 2 <= num_classes <= len(CLASSES):
        raise ValueError('num_classes must be between 2 and {}, got {}'.format(
            len(CLASSES), num_classes))
    w, h = size
    if min(w, h) < 16:
        raise ValueError('size (width, height) must be at least 16x16, got '
                         '{}'.format(size))
    for sub in ('images', 'labels'):
        os.makedirs(os.path.join(root, sub), exist_ok=True)
    for split_id, (split, count) in enumerate(
        (('train', num_train), ('val', num_val))):
        lines = []
        for i in range(count):
            rng = np.random.default_rng([seed, split_id, i])
            image, label = make_image(rng, size, num_classes,
                                      1 + i % (num_classes - 1))
            name = '{}_{:04d}.png'.format(split, i)
            cv2.imwrite(
                os.path.join(root, 'images', name),
                cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
            cv2.imwrite(os.path.join(root, 'labels', name), label)
            lines.append('images/{0} labels/{0}\n'.format(name))
        with open(os.path.join(root, split + '.txt'), 'w') as f:
            f.writelines(lines)
    with open(os.path.join(root, 'labels.txt'), 'w') as f:
        f.writelines(c[0] + '\n' for c in CLASSES[:num_classes])
    return {
        'dataset_root': root,
        'train_path': os.path.join(root, 'train.txt'),
        'val_path': os.path.join(root, 'val.txt'),
        'num_classes': num_classes,
    }


def main(argv=None):
    import argparse
    import time
    parser = argparse.ArgumentParser(
        prog='python -m paddleseg_ctx.datasets',
        description='Write the synthetic scene-parsing data set '
        '(PaddleSeg Dataset layout).')
    parser.add_argument('--root', required=True, help='output directory')
    parser.add_argument('--num_train', type=int, default=200)
    parser.add_argument('--num_val', type=int, default=50)
    parser.add_argument(
        '--size', type=int, nargs=2, default=(128, 128),
        metavar=('W', 'H'))
    parser.add_argument('--num_classes', type=int, default=len(CLASSES))
    parser.add_argument('--seed', type=int, default=0)
    args = parser.parse_args(argv)
    start = time.time()
    paths = make_synthetic_dataset(args.root, args.num_train, args.num_val,
                                   tuple(args.size), args.num_classes,
                                   args.seed)
    print('Wrote {} train + {} val images ({} classes) to {} in {:.1f}s'.
          format(args.num_train, args.num_val, args.num_classes,
                 paths['dataset_root'], time.time() - start))
