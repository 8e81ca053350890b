"""The published tables the model zoo follows, read from their sources:
``tests/data/published_recipes.yml`` (PaddleSeg's and sssegmentation's
tables, typed once) and mmsegmentation's own GCNet metafile (in its wheel).
"""
import importlib.util
import math
import os
import re

import yaml

DATA = os.path.join(os.path.dirname(os.path.abspath(__file__)), 'data',
                    'published_recipes.yml')
with open(DATA, encoding='utf-8') as _f:
    TABLES = yaml.safe_load(_f)

# Our backbone -> its name in sssegmentation's checkpoints and tables, and
# in mmseg's config names (depth).
SSSEG_BACKBONES = {'ResNet50_v1c': 'resnet50', 'ResNet101_v1c': 'resnet101',
                   'ResNeSt101': 'resnest101'}
MMSEG_BACKBONES = {50: 'ResNet50_v1c', 101: 'ResNet101_v1c'}
# mmseg's metafile data set names -> the zoo's.
MMSEG_DATASETS = {'Cityscapes': 'cityscapes', 'ADE20K': 'ade20k',
                  'Pascal VOC 2012 + Aug': 'voc12aug'}
COLUMNS = ('miou', 'miou_flip', 'miou_ms_flip')

# mmseg 1.x model names: gcnet_r<depth>-d8_<gpus>xb<per GPU>-<k iters>k_
# <data set>-<h>x<w>.
MMSEG_NAME = re.compile(r'gcnet_r(?P<depth>\d+)-d8_(?P<gpus>\d+)xb(?P<bs>\d+)-'
                        r'(?P<iters>\d+)k_(?P<dataset>[a-z0-9]+)-'
                        r'(?P<h>\d+)x(?P<w>\d+)$')


def paddleseg_rows():
    """{(model, backbone, dataset): row} of PaddleSeg's tables, each row
    completed with its data set's crop and val padding."""
    datasets = TABLES['paddleseg']['datasets']
    return {(r['model'], r['backbone'], r['dataset']):
            dict(datasets[r['dataset']], **r)
            for r in TABLES['paddleseg']['rows']}


def ssseg_iters(row, gpus):
    """Iterations of ``row``'s epochs on ``gpus`` GPUs."""
    images = TABLES['ssseg_isnet']['train_images'][row['dataset']]
    per_epoch = math.ceil(images / gpus) // (row['batch'] // gpus)
    return per_epoch * row['epochs']


def ssseg_rows():
    """{(dataset, checkpoint backbone name): row} of sssegmentation's ISNet
    table, each row completed with its data set's crop and test resize,
    its iterations (on 4 GPUs) and its weights URL."""
    table = TABLES['ssseg_isnet']
    return {(r['dataset'], r['backbone']): dict(
        table['datasets'][r['dataset']], iters=ssseg_iters(r, 4),
        weights=table['weights'].format(**r), **r) for r in table['rows']}


def mmseg_metafile():
    """Path of mmsegmentation's GCNet metafile, or None without mmseg."""
    spec = importlib.util.find_spec('mmseg')
    if spec is None:
        return None
    return os.path.join(os.path.dirname(spec.origin), '.mim', 'configs',
                        'gcnet', 'metafile.yaml')


def mmseg_rows(path):
    """The rows of mmseg's GCNet metafile at ``path``, in the zoo's terms:
    dicts with ``backbone``, ``dataset``, ``crop_size`` [w, h], ``iters``,
    ``gpus``, ``batch_size_per_gpu``, ``published`` and ``weights``, plus
    the metafile's own ``name``, ``batch_size`` and ``resources``."""
    with open(path, encoding='utf-8') as f:
        models = yaml.safe_load(f)['Models']
    rows = []
    for m in models:
        name = MMSEG_NAME.match(m['Name'])
        assert name, '{}: unexpected model name'.format(m['Name'])
        metrics = m['Results']['Metrics']
        rows.append({
            'name': m['Name'],
            'backbone': MMSEG_BACKBONES[int(name['depth'])],
            'dataset': name['dataset'],
            'metafile_dataset': MMSEG_DATASETS[m['Results']['Dataset']],
            'crop_size': [int(name['w']), int(name['h'])],
            'iters': int(name['iters']) * 1000,
            'gpus': int(name['gpus']),
            'batch_size_per_gpu': int(name['bs']),
            'batch_size': m['Metadata']['Batch Size'],
            'resources': m['Metadata']['Training Resources'],
            'published': {'miou': metrics['mIoU'], 'miou_flip': None,
                          'miou_ms_flip': metrics['mIoU(ms+flip)']},
            'weights': m['Weights'],
        })
    return rows
