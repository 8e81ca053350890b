"""configs/model_zoo.yml: schema checks, the published tables it records and
the README section made from it."""
import copy
import dataclasses
import glob
import os
import shlex

import pytest

import published
from paddleseg_ctx import zoo_readme as gen
from paddleseg_ctx.evaluation.protocol import (COLUMNS, Protocol,
                                               paddleseg_flags, protocol_for)
from paddleseg_ctx.testing.families import FAMILIES
from paddleseg_ctx.zoo import (EVAL_FIELDS, MODELS, REPO_ROOT, TTA_FIELDS,
                               ZooError, find_entry, is_published, load_zoo,
                               validate_zoo)


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


def test_eval_fields_are_protocol_fields():
    """The zoo's ``eval`` block is a Protocol in the zoo's words: every key
    but the scales of the ms+flip column and the TTA overrides is a field."""
    fields = {f.name for f in dataclasses.fields(Protocol)}
    assert set(EVAL_FIELDS) - {'ms_scales', 'tta'} <= fields
    assert set(TTA_FIELDS) <= fields


def test_zoo_models_are_the_family_tables():
    """The zoo's models are the families the tests and scripts know."""
    assert sorted(MODELS) == sorted({f.family for f in FAMILIES.values()})


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
# The published tables, read from their sources independently of the zoo
# (tests/published.py: tests/data/published_recipes.yml and mmseg's metafile).


def _published(numbers):
    """A table's [single, flip, ms+flip] as a zoo entry's ``published``."""
    return None if numbers is None else dict(zip(published.COLUMNS, numbers))


def test_paddleseg_rows_are_the_published_tables():
    rows = published.paddleseg_rows()
    entries = {(e['model'], e['backbone'], e['dataset']): e
               for e in ALL_ENTRIES if e['source'] == 'paddleseg'}
    assert sorted(entries) == sorted(rows)
    for key, row in rows.items():
        e = entries[key]
        assert e['published'] == _published(row['miou']), key
        assert (e['crop_size'], e['iters'], e['batch_size_per_gpu']) == (
            row['crop'], row['iters'], row['batch_size']), key


def test_mmseg_rows_match_mmsegmentations_metafile():
    """The mmseg rows against mmseg 1.x's own metafile (the same v0.5
    files): one row each, its schedule, GPUs, numbers and weights."""
    path = published.mmseg_metafile()
    if path is None:
        pytest.skip('mmsegmentation is not installed')
    models = published.mmseg_rows(path)
    by_weights = {e['weights']: e for e in ENTRIES if e['source'] == 'mmseg'}
    assert sorted(m['weights'] for m in models) == sorted(by_weights)
    for m in models:
        e = by_weights[m['weights']]
        for field in ('backbone', 'dataset', 'crop_size', 'iters', 'gpus',
                      'batch_size_per_gpu', 'published'):
            assert e[field] == m[field], (m['name'], field)
        assert m['metafile_dataset'] == m['dataset'], m['name']
        assert m['resources'].startswith('{}x '.format(e['gpus']))
        assert m['batch_size'] == e['gpus'] * e['batch_size_per_gpu']


def test_ssseg_rows_are_the_published_isnet_table():
    table = published.ssseg_rows()
    rows = {(e['dataset'], published.SSSEG_BACKBONES[e['backbone']]): e
            for e in ENTRIES if e['source'] == 'ssseg'}
    assert sorted(rows) == sorted(table)
    for key, row in table.items():
        e = rows[key]
        assert e['published'] == _published(row['miou']), key
        assert e['weights'] == row['weights']
        assert e['gpus'] * e['batch_size_per_gpu'] == row['batch']
        assert e['crop_size'] == row['crop']
        # Iterations of the row's epochs, the same on 4 or 8 GPUs.
        for gpus in (4, 8):
            assert e['iters'] == published.ssseg_iters(row, gpus), (key, gpus)
