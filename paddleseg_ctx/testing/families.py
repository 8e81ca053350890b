"""The model-family table, ``families.yml``: one row per form a model family
comes in, the one list of families that tests and scripts parametrize over.

:data:`FAMILIES` maps a row name (``ginet``, ``gcnet_mmseg``, ...) to a
:class:`Family`; :func:`build_light` builds the smallest model of a row.
Reading the table needs PyYAML only; building a model imports paddleseg_ctx.
"""
import os
from typing import NamedTuple, Optional

import yaml

__all__ = ['FAMILIES', 'Family', 'build_light', 'light_config']

TABLE = os.path.join(os.path.dirname(os.path.abspath(__file__)),
                     'families.yml')


class Family(NamedTuple):
    """A row of ``families.yml`` (its header documents each field)."""
    name: str
    family: str
    type: str
    paddleseg: Optional[str]
    form: dict
    light: dict
    learns: Optional[dict] = None


def _load(path=TABLE):
    with open(path, encoding='utf-8') as f:
        rows = yaml.safe_load(f)
    return {name: Family(name=name, **row) for name, row in rows.items()}


FAMILIES = _load()


def light_config(name, num_classes):
    """The ``model`` dict of a config for the light model of row ``name``."""
    family = FAMILIES[name]
    return dict(family.form, type=family.type, num_classes=num_classes,
                **family.light)


def build_light(name, num_classes, enable_auxiliary_loss=None):
    """The light model of row ``name``: its backbone and narrow heads, with
    the weights the classes initialise; ``enable_auxiliary_loss`` (bool)
    replaces the class default where given."""
    from paddleseg.cvlibs import manager

    import paddleseg_ctx  # noqa: F401  (registers the models and backbones)
    config = light_config(name, num_classes)
    if enable_auxiliary_loss is not None:
        config['enable_auxiliary_loss'] = enable_auxiliary_loss
    backbone = dict(config.pop('backbone'))
    backbone = manager.BACKBONES[backbone.pop('type')](**backbone)
    return manager.MODELS[config.pop('type')](backbone=backbone, **config)
