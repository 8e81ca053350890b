"""The demo config builds our model and trains through PaddleSeg's loop."""
import glob
import os

from paddleseg.core import train
from paddleseg.cvlibs import Config, SegBuilder

import paddleseg_ctx  # noqa: F401
from paddleseg_ctx.datasets.synthetic import make_synthetic_dataset
from paddleseg_ctx.models import CtxGCNet

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
DEMO = glob.glob(os.path.join(REPO, 'configs', 'demo', '*.yml'))


def test_one_demo_config_used_by_demo_script():
    assert len(DEMO) == 1
    with open(os.path.join(REPO, 'scripts', 'demo.sh')) as f:
        assert os.path.relpath(DEMO[0], REPO) in f.read()


def test_demo_config_trains_a_few_iterations(tmp_path):
    data = make_synthetic_dataset(str(tmp_path / 'data'), 4, 2, (64, 64))
    opts = ['train_dataset.dataset_root=' + data['dataset_root'],
            'train_dataset.train_path=' + data['train_path'],
            'val_dataset.dataset_root=' + data['dataset_root'],
            'val_dataset.val_path=' + data['val_path']]
    cfg = Config(DEMO[0], opts=opts, iters=3, batch_size=2)
    builder = SegBuilder(cfg)
    assert isinstance(builder.model, CtxGCNet)
    assert builder.model.num_classes == 6
    train(builder.model, builder.train_dataset, val_dataset=None,
          optimizer=builder.optimizer, save_dir=str(tmp_path / 'out'),
          iters=3, batch_size=2, save_interval=3, log_iters=1,
          losses=builder.loss)
    assert os.path.isfile(str(tmp_path / 'out' / 'iter_3' / 'model.pdparams'))
