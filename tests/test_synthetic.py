"""The generated data set: deterministic, PaddleSeg-readable, all classes."""
import filecmp
import os

import numpy as np
import pytest
from paddleseg.datasets import Dataset
from paddleseg.transforms import Normalize

from paddleseg_ctx.datasets.synthetic import CLASSES, make_synthetic_dataset


def test_same_seed_same_files_other_seed_other_files(tmp_path):
    a = make_synthetic_dataset(str(tmp_path / 'a'), 3, 2, (40, 32), seed=1)
    b = make_synthetic_dataset(str(tmp_path / 'b'), 3, 2, (40, 32), seed=1)
    c = make_synthetic_dataset(str(tmp_path / 'c'), 3, 2, (40, 32), seed=2)
    names = [os.path.join(d, f) for d in ('images', 'labels')
             for f in sorted(os.listdir(os.path.join(a['dataset_root'], d)))]
    assert len(names) == 10
    for name in names:
        assert filecmp.cmp(os.path.join(a['dataset_root'], name),
                           os.path.join(b['dataset_root'], name), False)
    assert not filecmp.cmp(os.path.join(a['dataset_root'], names[0]),
                           os.path.join(c['dataset_root'], names[0]), False)


def test_paddleseg_dataset_reads_it_with_every_class(tmp_path):
    num_classes = len(CLASSES)
    assert num_classes >= 5
    info = make_synthetic_dataset(str(tmp_path), 12, 6, (48, 40),
                                  num_classes=num_classes)
    for mode, key, count in (('train', 'train_path', 12),
                             ('val', 'val_path', 6)):
        dataset = Dataset(
            transforms=[Normalize()], dataset_root=info['dataset_root'],
            num_classes=num_classes, mode=mode, **{key: info[key]})
        assert len(dataset) == count
        seen = set()
        for i in range(count):
            sample = dataset[i]
            assert sample['img'].shape == (3, 40, 48)
            label = np.asarray(sample['label'])
            assert label.min() >= 0 and label.max() < num_classes
            seen.update(np.unique(label).tolist())
        assert seen == set(range(num_classes)), (mode, seen)
    with open(os.path.join(info['dataset_root'], 'labels.txt')) as f:
        assert [l.strip() for l in f] == [c[0] for c in CLASSES]


def test_colour_alone_does_not_separate_classes(tmp_path):
    # Per-pixel colour must be ambiguous: the nearest class-mean colour
    # classifier gets well below perfect accuracy.
    import cv2
    info = make_synthetic_dataset(str(tmp_path), 8, 0, (64, 64))
    pixels, labels = [], []
    for line in open(info['train_path']):
        image, label = line.split()
        pixels.append(cv2.imread(os.path.join(info['dataset_root'], image))
                      .reshape(-1, 3).astype('float32'))
        labels.append(cv2.imread(os.path.join(info['dataset_root'], label),
                                 0).reshape(-1))
    pixels, labels = np.concatenate(pixels), np.concatenate(labels)
    means = np.stack([pixels[labels == k].mean(0) for k in range(len(CLASSES))])
    nearest = np.argmin(((pixels[:, None] - means[None]) ** 2).sum(-1), 1)
    assert (nearest == labels).mean() < 0.8


def test_rejects_bad_arguments(tmp_path):
    with pytest.raises(ValueError, match='num_classes'):
        make_synthetic_dataset(str(tmp_path), 1, 1, num_classes=1)
    with pytest.raises(ValueError, match='16x16'):
        make_synthetic_dataset(str(tmp_path), 1, 1, size=(8, 8))
