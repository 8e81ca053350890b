"""PaddleSeg's prediction pictures without PIL: palette PNGs whose pixel
values are the class ids, and the image blended with the class colours
(``paddleseg/utils/visualize.py``, ``core/predict.py``)."""
import struct
import zlib

import cv2
import numpy as np

from paddleseg_ctx.files import atomic_write

__all__ = ['color_map', 'palette_png', 'overlay', 'write_file']


def color_map(custom_color=None):
    """PaddleSeg's 256-colour map as a [256, 3] uint8 RGB array: class ``i``
    gets the PASCAL VOC colour of label ``i + 1``; ``custom_color`` (flat
    R, G, B, ...) replaces the first entries."""
    labels = np.arange(1, 257)
    rgb = np.zeros((256, 3), np.int64)
    for bit in range(8):  # label bits (b2 b1 b0) fill colour bit 7 - bit
        for channel in range(3):
            rgb[:, channel] |= ((labels >> (3 * bit + channel)) & 1) << (7 -
                                                                         bit)
    if custom_color:
        flat = rgb.reshape(-1)
        flat[:len(custom_color)] = custom_color
    return rgb.astype(np.uint8)


def palette_png(label, colors):
    """An 8-bit palette PNG of ``label`` ([H, W] class ids < 256)."""

    def chunk(kind, data):
        body = kind + data
        return struct.pack('>I', len(data)) + body + struct.pack(
            '>I', zlib.crc32(body))

    h, w = label.shape
    rows = np.zeros((h, w + 1), np.uint8)  # each row starts with filter 0
    rows[:, 1:] = label
    return b''.join([
        b'\x89PNG\r\n\x1a\n',
        chunk(b'IHDR', struct.pack('>IIBBBBB', w, h, 8, 3, 0, 0, 0)),
        chunk(b'PLTE', np.ascontiguousarray(colors, np.uint8).tobytes()),
        chunk(b'IDAT', zlib.compress(rows.tobytes(), 6)),
        chunk(b'IEND', b''),
    ])


def overlay(image, label, colors, weight=0.6):
    """``image`` (uint8 BGR) blended with the colours of ``label``, as
    PaddleSeg's ``visualize`` does: weight * image + (1 - weight) * colour."""
    return cv2.addWeighted(image, weight, colors[label][..., ::-1],
                           1 - weight, 0)


def write_file(path, data):
    """Write ``data`` (bytes) to ``path`` atomically, creating its folder."""

    def write(tmp):
        with open(tmp, 'wb') as f:
            f.write(data)

    atomic_write(path, write)
