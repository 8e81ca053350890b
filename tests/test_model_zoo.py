"""configs/model_zoo.yml: schema checks and the README section made from it."""
import copy
import glob
import importlib.util
import os
import shlex

import pytest

from paddleseg_ctx.evaluation.protocol import (COLUMNS, paddleseg_flags,
                                               protocol_for)
from paddleseg_ctx.zoo import REPO_ROOT, ZooError, load_zoo, validate_zoo


def _load_script():
    path = os.path.join(REPO_ROOT, 'scripts', 'gen_model_zoo.py')
    spec = importlib.util.spec_from_file_location('gen_model_zoo', path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


gen = _load_script()
ENTRIES = load_zoo()
VALID = ENTRIES[0]


def test_every_experiment_config_is_in_the_zoo():
    on_disk = {
        os.path.relpath(p, REPO_ROOT)
        for p in glob.glob(os.path.join(REPO_ROOT, 'configs', '*', '*.yml'))
        if os.path.basename(os.path.dirname(p)) not in ('_base_', 'demo')
    }
    assert on_disk == {e['config'] for e in ENTRIES}


def _mutated(change):
    entry = copy.deepcopy(VALID)
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
    assert gen.replace_section(readme, gen.render(ENTRIES)) == readme, (
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


def test_table_has_one_row_per_entry_with_its_numbers():
    rows = [line for line in gen.render(ENTRIES).splitlines()
            if line.startswith('| ') and '](configs/' in line]
    assert len(rows) == len(ENTRIES)
    for row, e in zip(rows, ENTRIES):
        cells = [c.strip() for c in row.strip('|').split('|')]
        numbers = [e['published'][k] for k in ('miou', 'miou_flip',
                                               'miou_ms_flip')]
        assert cells[6:9] == ['{:.2f}'.format(n) for n in numbers]
        assert '({})'.format(e['config']) in cells[10]
        assert '({})'.format(e['weights']) in cells[11]


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
