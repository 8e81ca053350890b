"""LIP (Look Into Person) single-person human parsing: 30462 training and
10000 validation images, 20 classes (0 is background)."""
import os

from paddleseg.cvlibs import manager
from paddleseg.datasets import Dataset
from paddleseg.transforms import Compose

from paddleseg_ctx.registry import register

__all__ = ['LIP']


@register(manager.DATASETS)
class LIP(Dataset):
    """LIP in its released layout (which sssegmentation reads too)::

        dataset_root/train_images/<id>.jpg
        dataset_root/train_segmentations/<id>.png   class ids 0..19, used as is
        dataset_root/train_id.txt                   one id per line
        dataset_root/val_images/, val_segmentations/, val_id.txt

    ``FLIP_LABEL_PAIRS`` are the left/right classes (arms, legs, shoes) a
    horizontal flip must swap: in training (``CtxRandomHorizontalFlip``'s
    ``label_pairs``) and in flip testing (output channels).

    Args:
        transforms (list): Transforms, as for any PaddleSeg dataset.
        dataset_root (str): The directory laid out as above.
        mode (str): 'train' or 'val'.
    """
    NUM_CLASSES = 20
    IGNORE_INDEX = 255
    IMG_CHANNELS = 3
    CLASS_NAMES = ('background', 'hat', 'hair', 'glove', 'sunglasses',
                   'upperclothes', 'dress', 'coat', 'socks', 'pants',
                   'jumpsuits', 'scarf', 'skirt', 'face', 'leftArm',
                   'rightArm', 'leftLeg', 'rightLeg', 'leftShoe', 'rightShoe')
    FLIP_LABEL_PAIRS = ((14, 15), (16, 17), (18, 19))

    def __init__(self, transforms, dataset_root, mode='train'):
        self.mode = mode.lower()
        if self.mode not in ('train', 'val'):
            raise ValueError("LIP: `mode` must be 'train' or 'val', but it is "
                             "{!r}.".format(mode))
        self.dataset_root = dataset_root
        self.transforms = Compose(transforms)
        self.num_classes = self.NUM_CLASSES
        self.ignore_index = self.IGNORE_INDEX
        self.edge = False
        id_file = os.path.join(dataset_root, self.mode + '_id.txt')
        if not os.path.isfile(id_file):
            raise FileNotFoundError(
                'The id list {} does not exist; `dataset_root` must be the '
                'directory that holds {m}_images/, {m}_segmentations/ and '
                '{m}_id.txt.'.format(id_file, m=self.mode))
        with open(id_file) as f:
            ids = [line.strip() for line in f if line.strip()]
        self.file_list = [[
            os.path.join(dataset_root, self.mode + '_images', i + '.jpg'),
            os.path.join(dataset_root, self.mode + '_segmentations', i + '.png')
        ] for i in ids]
