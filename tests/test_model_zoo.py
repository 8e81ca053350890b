"""configs/model_zoo.yml: schema checks, the published tables it records and
the README section made from it."""
import copy
import glob
import importlib.util
import math
import os
import shlex

import pytest
import yaml

from paddleseg_ctx import zoo_readme as gen
from paddleseg_ctx.evaluation.protocol import (COLUMNS, paddleseg_flags,
                                               protocol_for)
from paddleseg_ctx.zoo import (REPO_ROOT, ZooError, find_entry, is_published,
                               load_zoo, validate_zoo)


ENTRIES = load_zoo()  # published results only
ALL_ENTRIES = load_zoo(include_unpublished=True)
UNPUBLISHED = [e for e in ALL_ENTRIES if not is_published(e)]
VALID = ENTRIES[0]
VALID_UNPUBLISHED = UNPUBLISHED[0]


def test_every_experiment_config_is_in_the_zoo():
    on_disk = {
        os.path.relpath(p, REPO_ROOT)
        for p in glob.glob(os.path.join(REPO_ROOT, 'configs', '*', '*.yml'))
        if os.path.basename(os.path.dirname(p)) not in ('_base_', 'demo')
    }
    assert on_disk == {e['config'] for e in ALL_ENTRIES}


def test_load_zoo_leaves_unpublished_entries_out_unless_asked():
    assert ENTRIES == [e for e in ALL_ENTRIES if e['published'] is not None]
    assert [e['config'] for e in UNPUBLISHED] == [
        'configs/isnet/isnet_resnet{}vd_os8_{}.yml'.format(depth, row)
        for row in ('cityscapes_1024x512_80k', 'voc12aug_512x512_40k',
                    'ade20k_520x520_150k') for depth in (50, 101)
    ]


def _mutated(change, entry=VALID):
    entry = copy.deepcopy(entry)
    change(entry)
    return entry


BROKEN = {  # what is wrong: (mutation, text the error must contain)
    'unknown key': (lambda e: e.update(miou=80.0), "unknown key 'miou'"),
    'missing key': (lambda e: e.pop('iters'), 'iters: missing'),
    'wrong type': (lambda e: e.update(iters='80k'), "iters: expected a "
                   "positive integer, got '80k'"),
    'bool is not int': (lambda e: e.update(batch_size_per_gpu=True),
                        'batch_size_per_gpu: expected'),
    'bad crop': (lambda e: e.update(crop_size=[1024]), 'crop_size: expected'),
    'bad choice': (lambda e: e.update(dataset='voc'),
                   "dataset: expected one of cityscapes"),
    'nested unknown key': (lambda e: e['published'].update(ms=1.0),
                           "published: unknown key 'ms'"),
    'nested wrong type': (lambda e: e['published'].update(miou='78.66'),
                          'published.miou: expected'),
    'nothing published': (lambda e: e['published'].update(
        miou=None, miou_flip=None, miou_ms_flip=None), 'at least one mIoU'),
    'eval missing key': (lambda e: e['eval'].pop('merge'),
                         'eval.merge: missing'),
    'slide without window': (lambda e: e['eval'].update(mode='slide'),
                             'mode slide needs slide_crop_size'),
    'resize without img_scale': (lambda e: e['eval'].update(
        test_resize='fit'), 'img_scale goes with test_resize fit'),
    'unknown tta key': (lambda e: e['eval'].update(tta={'scales': [1]}),
                        "eval.tta: unknown key 'scales'"),
    'source cannot do it': (lambda e: e['eval'].update(miou='nanmean'),
                            "PaddleSeg's evaluate does not support miou: "
                            "nanmean"),
    'not what the source does': (lambda e: e.update(source='mmseg'),
                                 "merge: logits (mmseg's test code uses "
                                 "probs)"),
    'window without slide': (lambda e: e['eval'].update(
        slide_stride=[512, 512]), 'only apply to mode slide'),
    'config missing': (lambda e: e.update(config='configs/x/none.yml'),
                       'configs/x/none.yml does not exist'),
    'not a url': (lambda e: e.update(weights='model.pdparams'),
                  'weights: expected an http(s) URL'),
}


@pytest.mark.parametrize('problem', BROKEN)
def test_schema_errors_name_the_problem(problem):
    change, message = BROKEN[problem]
    with pytest.raises(ZooError) as info:
        validate_zoo([_mutated(change)])
    assert message in str(info.value)
    assert 'entry 0' in str(info.value)


BROKEN_UNPUBLISHED = {  # what is wrong: (mutation, text the error must contain)
    'no note': (lambda e: e.pop('note'), 'note: missing (expected a sentence'),
    'empty note': (lambda e: e.update(note=' '), 'note: expected a sentence'),
    'weights of nothing': (lambda e: e.update(weights='https://x/m.pdparams'),
                           'weights: expected null'),
    'protocol of nothing': (lambda e: e.update(eval=VALID['eval']),
                            'eval: an entry with `published: null` has no '
                            'number to re-measure'),
    'still checked': (lambda e: e.update(iters=0), 'iters: expected'),
}


@pytest.mark.parametrize('problem', BROKEN_UNPUBLISHED)
def test_unpublished_entries_are_checked_too(problem):
    change, message = BROKEN_UNPUBLISHED[problem]
    with pytest.raises(ZooError) as info:
        validate_zoo([_mutated(change, VALID_UNPUBLISHED)])
    assert message in str(info.value)
    validate_zoo([VALID_UNPUBLISHED])  # as in the file: valid


def test_unpublished_entry_has_no_protocol_to_run(capsys):
    config = VALID_UNPUBLISHED['config']
    with pytest.raises(ZooError, match='has no published number'):
        find_entry(os.path.join(REPO_ROOT, config))
    assert find_entry(os.path.join(REPO_ROOT, VALID['config'])) == VALID
    cli = pytest.importorskip('paddleseg_ctx.cli.val')
    with pytest.raises(SystemExit):
        cli.main(['--config', os.path.join(REPO_ROOT, config),
                  '--protocol', 'single'])
    err = capsys.readouterr().err
    assert 'has no published number' in err and "PaddleSeg's flags" in err


def test_every_problem_is_reported_at_once():
    entry = _mutated(lambda e: e.update(iters=0, gpus='4', extra=1))
    with pytest.raises(ZooError) as info:
        validate_zoo([entry, copy.deepcopy(VALID)])
    text = str(info.value)
    for part in ('iters: expected', 'gpus: expected', "unknown key 'extra'",
                 'entry 1 ({}): same config as entry 0'.format(
                     VALID['config'])):
        assert part in text


def test_load_zoo_rejects_a_file_that_is_not_a_list(tmp_path):
    path = tmp_path / 'configs' / 'model_zoo.yml'
    path.parent.mkdir()
    path.write_text('config: a.yml\n')
    with pytest.raises(ZooError, match='expected a non-empty YAML list'):
        load_zoo(str(path))


def test_readme_section_is_up_to_date():
    with open(gen.README, encoding='utf-8') as f:
        readme = f.read()
    assert gen.replace_section(readme, gen.render(ALL_ENTRIES)) == readme, (
        'README.md model zoo is stale: run python scripts/gen_model_zoo.py')


def test_check_flag_detects_a_stale_readme(tmp_path, capsys):
    readme = tmp_path / 'README.md'
    readme.write_text('# x\n\n{}\nold table\n{}\n'.format(gen.START, gen.END))
    assert gen.main(['--check', '--readme', str(readme)]) == 1
    assert gen.main(['--readme', str(readme)]) == 0
    assert gen.main(['--check', '--readme', str(readme)]) == 0
    text = readme.read_text()
    assert 'old table' not in text and text.startswith('# x\n\n')
    assert 'is stale' in capsys.readouterr().out


def _table_rows(text):
    return {
        row.split('](')[1].split(')')[0]:
        [c.strip() for c in row.strip('|').split('|')]
        for row in text.splitlines()
        if row.startswith('| ') and '](configs/' in row
    }


def test_table_has_one_row_per_entry_with_its_numbers():
    text = gen.render(ALL_ENTRIES)
    rows = _table_rows(text)
    assert sorted(rows) == sorted(e['config'] for e in ALL_ENTRIES)
    for e in ENTRIES:
        cells = rows[e['config']]
        gpus = '?' if e['gpus'] is None else str(e['gpus'])
        assert cells[5] == '{}×{}'.format(gpus, e['batch_size_per_gpu'])
        numbers = [e['published'][k] for k in ('miou', 'miou_flip',
                                               'miou_ms_flip')]
        assert cells[6:9] == ['-' if n is None else '{:.2f}'.format(n)
                              for n in numbers]
        assert cells[10] == '[model]({})'.format(e['weights'])
    for source, title in gen.SOURCE_TITLES.items():  # a table per source
        assert ('#### ' + title in text) == any(e['source'] == source
                                                for e in ENTRIES)


def test_unpublished_rows_have_their_own_table_and_no_command():
    text = gen.render(ALL_ENTRIES)
    heading = "#### ISNet under PaddleSeg's recipes (no published numbers)"
    assert text.count(heading) == 1
    unpublished_part = text.split(heading)[1].split('Commands that')[0]
    rows = _table_rows(unpublished_part)
    assert sorted(rows) == sorted(e['config'] for e in UNPUBLISHED)
    for e in UNPUBLISHED:
        cells = rows[e['config']]
        assert len(cells) == 8 and cells[6] == 'PaddleSeg'
        assert not any(c[:1].isdigit() and '.' in c for c in cells[:7])
        assert gen.eval_commands(e) == []
        assert e['config'] not in text.split('Commands that')[1]


@pytest.mark.parametrize('entry', ENTRIES, ids=lambda e: e['config'])
def test_eval_commands_run_each_published_column(entry):
    cli = pytest.importorskip('paddleseg_ctx.cli.val')
    commands = [
        line for line in gen.eval_commands(entry)
        if line.startswith('python -m paddleseg_ctx.val ')
    ]
    columns = [c for c, key in COLUMNS.items()
               if entry['published'][key] is not None]
    assert len(commands) == len(columns)
    parser = cli.build_parser()
    for command, column in zip(commands, columns):
        args = parser.parse_args(shlex.split(command)[3:])
        assert (args.config, args.protocol) == (entry['config'], column)
        assert args.model_path == entry['weights']
        assert not args.aug_eval and not args.is_slide  # --protocol only


@pytest.mark.parametrize(
    'entry', [e for e in ENTRIES if e['source'] == 'paddleseg'],
    ids=lambda e: e['config'])
def test_paddleseg_rows_run_paddleseg_flags(entry):
    """--protocol on a PaddleSeg row = tools/val.py with these flags."""
    flags = {c: paddleseg_flags(protocol_for(entry, c)) for c in COLUMNS}
    assert flags['single'] == {}  # plain evaluation
    assert flags['flip'] == dict(aug_eval=True, scales=[1.0],
                                 flip_horizontal=True)
    assert flags['ms_flip'] == dict(aug_eval=True, scales=[0.75, 1.0, 1.25],
                                    flip_horizontal=True)  # PaddleSeg's ms


# ---------------------------------------------------------------------------
# The published tables, written from MODELS_SPEC.md independently of the zoo.

# mmsegmentation's GCNet table (MODELS_SPEC 5.1): our config -> (0.x config
# name, mIoU, ms+flip, checkpoint stamp); 4 GPUs, 2 (Cityscapes) or 4 images
# each.
MMSEG_GCNET = {
    'gcnet_resnet50v1c_os8_cityscapes_1024x512_40k':
    ('gcnet_r50-d8_512x1024_40k_cityscapes', 77.69, 78.56,
     '20200618_074436-4b0fd17b'),
    'gcnet_resnet101v1c_os8_cityscapes_1024x512_40k':
    ('gcnet_r101-d8_512x1024_40k_cityscapes', 78.28, 79.34,
     '20200618_074436-5e62567f'),
    'gcnet_resnet50v1c_os8_cityscapes_769x769_40k':
    ('gcnet_r50-d8_769x769_40k_cityscapes', 78.12, 80.09,
     '20200618_182814-a26f4471'),
    'gcnet_resnet101v1c_os8_cityscapes_769x769_40k':
    ('gcnet_r101-d8_769x769_40k_cityscapes', 78.95, 80.71,
     '20200619_092550-ca4f0a84'),
    'gcnet_resnet50v1c_os8_cityscapes_1024x512_80k':
    ('gcnet_r50-d8_512x1024_80k_cityscapes', 78.48, 80.01,
     '20200618_074450-ef8f069b'),
    'gcnet_resnet101v1c_os8_cityscapes_1024x512_80k':
    ('gcnet_r101-d8_512x1024_80k_cityscapes', 79.03, 79.84,
     '20200618_074450-778ebf69'),
    'gcnet_resnet50v1c_os8_cityscapes_769x769_80k':
    ('gcnet_r50-d8_769x769_80k_cityscapes', 78.68, 80.66,
     '20200619_092516-4839565b'),
    'gcnet_resnet101v1c_os8_cityscapes_769x769_80k':
    ('gcnet_r101-d8_769x769_80k_cityscapes', 79.18, 80.71,
     '20200619_092628-8e043423'),
    'gcnet_resnet50v1c_os8_ade20k_512x512_80k':
    ('gcnet_r50-d8_512x512_80k_ade20k', 41.47, 42.85,
     '20200614_185146-91a6da41'),
    'gcnet_resnet101v1c_os8_ade20k_512x512_80k':
    ('gcnet_r101-d8_512x512_80k_ade20k', 42.82, 44.54,
     '20200615_020811-c3fcb6dd'),
    'gcnet_resnet50v1c_os8_ade20k_512x512_160k':
    ('gcnet_r50-d8_512x512_160k_ade20k', 42.37, 43.52,
     '20200615_224122-d95f3e1f'),
    'gcnet_resnet101v1c_os8_ade20k_512x512_160k':
    ('gcnet_r101-d8_512x512_160k_ade20k', 43.69, 45.21,
     '20200615_225406-615528d7'),
    'gcnet_resnet50v1c_os8_voc12aug_512x512_20k':
    ('gcnet_r50-d8_512x512_20k_voc12aug', 76.42, 77.51,
     '20200617_165701-3cbfdab1'),
    'gcnet_resnet101v1c_os8_voc12aug_512x512_20k':
    ('gcnet_r101-d8_512x512_20k_voc12aug', 77.41, 78.56,
     '20200617_165713-6c720aa9'),
    'gcnet_resnet50v1c_os8_voc12aug_512x512_40k':
    ('gcnet_r50-d8_512x512_40k_voc12aug', 76.24, 77.63,
     '20200613_195105-9797336d'),
    'gcnet_resnet101v1c_os8_voc12aug_512x512_40k':
    ('gcnet_r101-d8_512x512_40k_voc12aug', 77.84, 78.59,
     '20200613_185806-1e38208d'),
}
MMSEG_URL = ('https://download.openmmlab.com/mmsegmentation/v0.5/gcnet/'
             '{0}/{0}_{1}.pth')

# sssegmentation's ISNet table (MODELS_SPEC 6.3): (dataset, checkpoint
# backbone name) -> (mIoU, flip, ms+flip, total batch, epochs, train images).
SSSEG_ISNET = {
    ('cocostuff10k', 'resnet50'): (38.06, None, 40.39, 16, 110, 9000),
    ('cocostuff10k', 'resnet101'): (40.53, None, 41.74, 16, 110, 9000),
    ('cocostuff10k', 'resnest101'): (41.55, None, 42.53, 32, 150, 9000),
    ('ade20k', 'resnet50'): (44.22, None, 45.03, 16, 130, 20210),
    ('ade20k', 'resnet101'): (45.92, None, 47.29, 16, 130, 20210),
    ('ade20k', 'resnest101'): (46.65, None, 47.56, 16, 180, 20210),
    ('cityscapes', 'resnet50'): (79.32, None, 81.31, 16, 440, 2975),
    ('cityscapes', 'resnet101'): (80.56, None, 81.96, 16, 440, 2975),
    ('cityscapes', 'resnest101'): (78.78, None, 81.33, 16, 440, 2975),
    ('lip', 'resnet50'): (53.14, 53.41, None, 32, 150, 30462),
    ('lip', 'resnet101'): (54.96, 55.41, None, 32, 150, 30462),
    ('lip', 'resnest101'): (56.52, 56.81, None, 40, 150, 30462),
}
SSSEG_BACKBONES = {'ResNet50_v1c': 'resnet50', 'ResNet101_v1c': 'resnet101',
                   'ResNeSt101': 'resnest101'}
SSSEG_URL = ('https://github.com/SegmentationBLWX/modelstore/releases/'
             'download/ssseg_isnet/isnet_{}os8_{}.pth')


def _stem(entry):
    return os.path.basename(entry['config'])[:-len('.yml')]


def test_mmseg_rows_are_the_published_gcnet_table():
    rows = {_stem(e): e for e in ENTRIES if e['source'] == 'mmseg'}
    assert sorted(rows) == sorted(MMSEG_GCNET)
    for stem, (name, miou, ms_flip, stamp) in MMSEG_GCNET.items():
        e = rows[stem]
        assert e['published'] == {'miou': miou, 'miou_flip': None,
                                  'miou_ms_flip': ms_flip}, stem
        assert e['weights'] == MMSEG_URL.format(name, stamp)
        assert (e['gpus'], e['batch_size_per_gpu']) == (
            4, 2 if e['dataset'] == 'cityscapes' else 4)


def test_mmseg_rows_match_mmsegmentations_metafile():
    """The same rows against mmseg 1.x's own metafile (same v0.5 files)."""
    spec = importlib.util.find_spec('mmseg')
    if spec is None:
        pytest.skip('mmsegmentation is not installed')
    path = os.path.join(os.path.dirname(spec.origin), '.mim', 'configs',
                        'gcnet', 'metafile.yaml')
    with open(path) as f:
        models = yaml.safe_load(f)['Models']
    by_weights = {e['weights']: e for e in ENTRIES if e['source'] == 'mmseg'}
    assert sorted(m['Weights'] for m in models) == sorted(by_weights)
    for m in models:
        e = by_weights[m['Weights']]
        metrics = m['Results']['Metrics']
        assert (e['published']['miou'], e['published']['miou_ms_flip']) == (
            metrics['mIoU'], metrics['mIoU(ms+flip)'])
        assert m['Metadata']['Training Resources'].startswith(
            '{}x '.format(e['gpus']))
        assert m['Metadata']['Batch Size'] == (e['gpus'] *
                                               e['batch_size_per_gpu'])
        # 1.x names encode GPUs x images per GPU, e.g. _4xb2-
        assert '_{}xb{}-'.format(e['gpus'], e['batch_size_per_gpu']) in (
            m['Name'])


def test_ssseg_rows_are_the_published_isnet_table():
    rows = {(e['dataset'], SSSEG_BACKBONES[e['backbone']]): e
            for e in ENTRIES if e['source'] == 'ssseg'}
    assert sorted(rows) == sorted(SSSEG_ISNET)
    for key, (miou, flip, ms_flip, batch, epochs, images) in (
            SSSEG_ISNET.items()):
        e = rows[key]
        assert e['published'] == {'miou': miou, 'miou_flip': flip,
                                  'miou_ms_flip': ms_flip}, key
        assert e['weights'] == SSSEG_URL.format(key[1], key[0])
        assert e['gpus'] * e['batch_size_per_gpu'] == batch
        # Iterations of `epochs` epochs: DistributedSampler gives each of G
        # GPUs ceil(N / G) images; the loader drops the last partial batch.
        for gpus in (4, 8):
            per_epoch = math.ceil(images / gpus) // (batch // gpus)
            assert e['iters'] == per_epoch * epochs, (key, gpus)
