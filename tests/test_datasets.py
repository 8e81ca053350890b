"""COCO-Stuff-10k and LIP datasets on tiny generated copies of their layouts."""
import os

import cv2
import numpy as np
import paddle
import pytest
from PIL import Image
from paddleseg.core import evaluate
from paddleseg.cvlibs import manager
from scipy import io as sio

import paddleseg_ctx  # noqa: F401  (registration)
from paddleseg_ctx.datasets import LIP, CocoStuff10k
from paddleseg_ctx.transforms import CtxRandomHorizontalFlip, CtxRandomResize

SIZES = [(23, 31), (17, 40), (29, 19)]  # (h, w), odd


def _write_image(path, h, w, seed):
    img = np.random.RandomState(seed).randint(0, 256, (h, w, 3)).astype(np.uint8)
    cv2.imwrite(path, img)
    return cv2.imread(path)[..., ::-1].astype(np.float32)  # what Compose reads (RGB)


@pytest.fixture
def cocostuff10k(tmp_path):
    """root/images/<id>.jpg, root/annotations/<id>.mat (S), root/imageLists/*.txt"""
    for d in ('images', 'annotations', 'imageLists'):
        (tmp_path / d).mkdir()
    expected = {}
    ids = ['COCO_train2014_000000000077', 'COCO_train2014_000000000078',
           'COCO_val2014_000000000139']
    for seed, (i, (h, w)) in enumerate(zip(ids, SIZES)):
        image = _write_image(str(tmp_path / 'images' / (i + '.jpg')), h, w, seed)
        raw = np.random.RandomState(seed).randint(0, 183, (h, w)).astype(np.uint16)
        raw[0, :3] = [0, 1, 182]  # unlabeled, first and last class
        sio.savemat(str(tmp_path / 'annotations' / (i + '.mat')),
                    {'S': raw, 'names': np.array(['a', 'b'], dtype=object)})
        expected[i] = image, np.where(raw == 0, 255, raw.astype(np.int64) - 1)
    (tmp_path / 'imageLists' / 'train.txt').write_text('\n'.join(ids[:2]) + '\n')
    (tmp_path / 'imageLists' / 'test.txt').write_text(ids[2] + '\n\n')
    return str(tmp_path), ids, expected


@pytest.fixture
def lip(tmp_path):
    """root/{train,val}_images/<id>.jpg, root/{train,val}_segmentations/<id>.png,
    root/{train,val}_id.txt"""
    expected = {}
    for mode, ids in (('train', ['100034_483681', '10005_205677']),
                      ('val', ['100034_483682'])):
        (tmp_path / (mode + '_images')).mkdir()
        (tmp_path / (mode + '_segmentations')).mkdir()
        for seed, (i, (h, w)) in enumerate(zip(ids, SIZES)):
            image = _write_image(str(tmp_path / (mode + '_images') / (i + '.jpg')),
                                 h, w, seed)
            label = np.random.RandomState(seed).randint(0, 20, (h, w)).astype(np.uint8)
            Image.fromarray(label, mode='L').save(
                str(tmp_path / (mode + '_segmentations') / (i + '.png')))
            expected[i] = image, label
        (tmp_path / (mode + '_id.txt')).write_text('\n'.join(ids) + '\n')
    return str(tmp_path), expected


def test_cocostuff10k_train_decodes_mat_labels(cocostuff10k):
    root, ids, expected = cocostuff10k
    dataset = CocoStuff10k([], root, mode='train')
    assert len(dataset) == 2
    for idx, i in enumerate(ids[:2]):
        data = dataset[idx]
        image, label = expected[i]
        np.testing.assert_array_equal(data['img'], image.transpose(2, 0, 1))
        np.testing.assert_array_equal(data['label'], label)
        assert data['label'].dtype == np.uint8
        assert data['label'][0, :3].tolist() == [255, 0, 181]


def test_cocostuff10k_val_is_the_test_split_at_original_size(cocostuff10k):
    root, ids, expected = cocostuff10k
    dataset = CocoStuff10k([CtxRandomResize([64, 32], ratio_range=None)], root,
                           mode='val')
    assert len(dataset) == 1
    data = dataset[0]
    image, label = expected[ids[2]]
    np.testing.assert_array_equal(data['label'], label[np.newaxis])
    assert data['trans_info'] == [('resize', label.shape)]
    assert data['img'].shape[1:] != label.shape  # only the image was resized


def test_cocostuff10k_is_registered_with_paddleseg_attributes():
    assert manager.DATASETS['CocoStuff10k'] is CocoStuff10k
    assert (CocoStuff10k.NUM_CLASSES, CocoStuff10k.IGNORE_INDEX,
            CocoStuff10k.IMG_CHANNELS) == (182, 255, 3)


def test_cocostuff10k_errors_name_the_problem(cocostuff10k, tmp_path):
    root, ids, _ = cocostuff10k
    with pytest.raises(ValueError, match="'train' or 'val'"):
        CocoStuff10k([], root, mode='test')
    with pytest.raises(FileNotFoundError, match='imageLists'):
        CocoStuff10k([], str(tmp_path / 'images'), mode='train')
    sio.savemat(os.path.join(root, 'annotations', ids[0] + '.mat'),
                {'L': np.zeros((2, 2))})
    with pytest.raises(ValueError, match='no variable "S"'):
        CocoStuff10k([], root, mode='train')[0]


class _ConstantModel(paddle.nn.Layer):
    """Predicts class ``k`` everywhere."""

    def __init__(self, num_classes, k):
        super().__init__()
        self.num_classes, self.k = num_classes, k

    def forward(self, x):
        logit = paddle.nn.functional.one_hot(
            paddle.full(x.shape[:1] + x.shape[2:], self.k, 'int64'), self.num_classes)
        return [logit.transpose([0, 3, 1, 2])]


def test_paddleseg_evaluate_uses_cocostuff10k_unchanged(cocostuff10k):
    root, ids, expected = cocostuff10k
    dataset = CocoStuff10k([CtxRandomResize([64, 32], ratio_range=None)], root,
                           mode='val')
    _, label = expected[ids[2]]
    k = int(label[1, 1])
    miou, acc, class_iou, _, _ = evaluate(_ConstantModel(182, k), dataset,
                                         print_detail=False)
    valid = label != 255
    # Only class k can have a non-zero IoU: |label == k| / |valid|.
    assert class_iou[k] == pytest.approx((label == k).sum() / valid.sum())
    assert np.count_nonzero(class_iou) == 1
    assert acc == pytest.approx((label == k).sum() / valid.sum())


def test_lip_reads_released_layout(lip):
    root, expected = lip
    train = LIP([], root, mode='train')
    assert len(train) == 2
    for idx, i in enumerate(['100034_483681', '10005_205677']):
        data = train[idx]
        image, label = expected[i]
        np.testing.assert_array_equal(data['img'], image.transpose(2, 0, 1))
        np.testing.assert_array_equal(data['label'], label)
    val = LIP([], root, mode='val')
    data = val[0]
    np.testing.assert_array_equal(data['label'], expected['100034_483682'][1][np.newaxis])
    assert manager.DATASETS['LIP'] is LIP
    assert (LIP.NUM_CLASSES, LIP.IGNORE_INDEX, len(LIP.CLASS_NAMES)) == (20, 255, 20)


def test_lip_training_flip_swaps_left_and_right(lip):
    root, expected = lip
    flip = CtxRandomHorizontalFlip(prob=1.0, label_pairs=LIP.FLIP_LABEL_PAIRS)
    data = LIP([flip], root, mode='train')[0]
    label = expected['100034_483681'][1][:, ::-1]
    swap = np.arange(256)
    swap[[14, 15, 16, 17, 18, 19]] = [15, 14, 17, 16, 19, 18]
    np.testing.assert_array_equal(data['label'], swap[label])


def test_lip_errors_name_the_problem(lip, tmp_path):
    root, _ = lip
    with pytest.raises(ValueError, match="'train' or 'val'"):
        LIP([], root, mode='test')
    with pytest.raises(FileNotFoundError, match='train_id.txt'):
        LIP([], str(tmp_path / 'train_images'), mode='train')
