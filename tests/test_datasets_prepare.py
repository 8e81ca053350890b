"""``python -m paddleseg_ctx.datasets prepare`` / ``check`` and ``train``'s
start-up check, on miniature copies of each data set's official downloads
(written by dataset_layouts.write_*_downloads: the archives' member names,
palette PNGs, labelIds PNGs, SBD and COCO-Stuff ``.mat`` v5 files).

Prepared labels are compared with the mapping computed here, independently
of paddleseg_ctx (the Cityscapes table is written out below, not read from
official.yml); PaddleSeg's dataset classes and ours read the prepared
folders through the published configs.
"""
import io
import os
import shutil
import subprocess
import sys
import tarfile
import zipfile

import numpy as np
import pytest
from paddleseg.datasets import ADE20K, Cityscapes, PascalVOC
from PIL import Image
from scipy import io as sio

import dataset_layouts as layouts
import paddleseg_ctx  # noqa: F401  (registers our datasets)
from paddleseg_ctx.config import Builder, read_config
from paddleseg_ctx.datasets import LIP, CocoStuff10k
from paddleseg_ctx.datasets.checks import SampleError
from paddleseg_ctx.datasets.command import main
from paddleseg_ctx.datasets.prepare import (PrepareError, official, prepare,
                                            read_mat, verify)
from paddleseg_ctx.datasets.survey import check_config, startup_check
from paddleseg_ctx.zoo import REPO_ROOT

# The 19 Cityscapes label ids that are evaluated, in train-id order
# (cityscapesscripts labels.py); every other id is ignored (255).
CITYSCAPES_EVAL_IDS = [7, 8, 11, 12, 13, 17, 19, 20, 21, 22, 23, 24, 25, 26,
                       27, 28, 31, 32, 33]

# Published configs per data set: each must read the prepared folder.
CONFIGS = {
    'cityscapes': ['configs/ginet/ginet_resnet50vd_os8_cityscapes_1024x512_80k.yml',
                   'configs/gcnet/gcnet_resnet50v1c_os8_cityscapes_1024x512_40k.yml'],
    'voc12aug': ['configs/ginet/ginet_resnet50vd_os8_voc12aug_512x512_40k.yml',
                 'configs/gcnet/gcnet_resnet50v1c_os8_voc12aug_512x512_20k.yml'],
    'ade20k': ['configs/ginet/ginet_resnet50vd_os8_ade20k_520x520_150k.yml',
               'configs/isnet/isnet_resnet50v1c_os8_ade20k_512x512_164190.yml'],
    'cocostuff10k': ['configs/isnet/isnet_resnet50v1c_os8_cocostuff10k_512x512_61820.yml'],
    'lip': ['configs/isnet/isnet_resnet50v1c_os8_lip_473x473_142800.yml'],
}
NAMES = list(CONFIGS)


def _downloads(name, src):
    """(counts, raw, extra) of the miniature downloads written to ``src``."""
    out = getattr(layouts, 'write_{}_downloads'.format(name))(str(src))
    return out[0], out[1], out[2:]


def _prepared(name, tmp_path, workers=1):
    counts, raw, extra = _downloads(name, tmp_path / 'src')
    dst = str(tmp_path / 'data' / name)
    found = prepare(name, str(tmp_path / 'src'), dst, workers=workers,
                    counts=counts)
    assert found == counts
    return dst, counts, raw, extra


def _png(path):
    return np.asarray(Image.open(path))


def _opts(dst):
    return ['train_dataset.dataset_root=' + dst,
            'val_dataset.dataset_root=' + dst]


def test_official_table_holds_the_published_facts():
    table = official()
    assert {k: v['splits'] for k, v in table.items()} == {
        'cityscapes': {'train': 2975, 'val': 500, 'test': 1525},
        'voc12aug': {'train': 1464, 'trainaug': 10582, 'val': 1449},
        'ade20k': {'train': 20210, 'val': 2000},
        'cocostuff10k': {'train': 9000, 'test': 1000},
        'lip': {'train': 30462, 'val': 10000},
    }
    table_ids = table['cityscapes']['train_ids']
    assert sorted(table_ids) == CITYSCAPES_EVAL_IDS
    assert [table_ids[i] for i in CITYSCAPES_EVAL_IDS] == list(range(19))
    for name, info in table.items():
        assert info['dataset_root'].startswith('data/')
        for split in info['config_splits'].values():
            assert split in info['splits']
        low, high = info['label_values']
        assert high - low + 1 in (info['num_classes'], info['num_classes'] + 1)


# ----------------------------------------------------------- prepared labels
def test_cityscapes_train_ids(tmp_path):
    dst, counts, raw, _ = _prepared('cityscapes', tmp_path, workers=2)
    for split in counts:
        for stem, ids in raw[split].items():
            expected = np.full(ids.shape, 255, np.uint8)
            for train_id, label_id in enumerate(CITYSCAPES_EVAL_IDS):
                expected[ids == label_id] = train_id
            city = stem.split('_')[0]
            got = _png(os.path.join(dst, 'gtFine', split, city,
                                    stem + '_gtFine_labelTrainIds.png'))
            np.testing.assert_array_equal(got, expected)
            assert os.path.isfile(os.path.join(
                dst, 'leftImg8bit', split, city, stem + '_leftImg8bit.png'))
    # only what PaddleSeg and mmseg read: no labelIds, colour or instance files
    assert not [f for _, _, files in os.walk(dst) for f in files
                if f.endswith(('labelIds.png', 'color.png', 'instanceIds.png'))]
    dataset = Cityscapes(transforms=[], dataset_root=dst, mode='val')
    for image, label in dataset.file_list:  # PaddleSeg pairs by sorted glob
        assert os.path.basename(image)[:-len('leftImg8bit.png')] == \
            os.path.basename(label)[:-len('gtFine_labelTrainIds.png')]


def test_voc12aug_one_label_folder_and_trainaug_list(tmp_path):
    dst, counts, raw, (splits,) = _prepared('voc12aug', tmp_path)
    voc = os.path.join(dst, 'VOC2012')
    lists = os.path.join(voc, 'ImageSets', 'Segmentation')

    def read(name):
        with open(os.path.join(lists, name + '.txt')) as f:
            return f.read().split()

    sbd_only = splits['aug']
    assert read('train') == splits['train'] and read('val') == splits['val']
    assert sorted(read('aug')) == sorted(sbd_only)
    assert sorted(read('trainaug')) == sorted(splits['train'] + sbd_only)
    for i in splits['train'] + splits['val']:  # palette PNG -> indices, 255 kept
        expected = raw['voc'][i]
        assert (expected == 255).any()
        np.testing.assert_array_equal(
            _png(os.path.join(voc, 'SegmentationClassAug', i + '.png')),
            expected)
        np.testing.assert_array_equal(
            _png(os.path.join(voc, 'SegmentationClass', i + '.png')), expected)
    for i in sbd_only:  # GTcls.Segmentation, the boundaries dropped
        np.testing.assert_array_equal(
            _png(os.path.join(voc, 'SegmentationClassAug', i + '.png')),
            raw['sbd'][i])
    # An image only SBD has comes from SBD's img/.
    assert os.path.isfile(os.path.join(voc, 'JPEGImages', sbd_only[-1] +
                                       '.jpg'))
    dataset = PascalVOC(transforms=[], dataset_root=dst, mode='trainaug')
    assert len(dataset) == counts['trainaug']
    for index, (_, label_path) in enumerate(dataset.file_list):
        i = os.path.basename(label_path)[:-4]
        expected = raw['voc'][i] if i in splits['train'] else raw['sbd'][i]
        np.testing.assert_array_equal(dataset[index]['label'], expected)


def test_ade20k_kept_and_shifted_by_the_class(tmp_path):
    dst, counts, raw, _ = _prepared('ade20k', tmp_path)
    for split, folder in (('train', 'training'), ('val', 'validation')):
        for stem, label in raw[split].items():
            np.testing.assert_array_equal(
                _png(os.path.join(dst, 'annotations', folder, stem + '.png')),
                label)
    dataset = ADE20K(transforms=[], dataset_root=dst, mode='train')
    assert len(dataset) == counts['train']
    for index, (image, _) in enumerate(dataset.file_list):
        label = raw['train'][os.path.basename(image)[:-4]]
        expected = np.where(label == 0, 255, label.astype(int) - 1)
        np.testing.assert_array_equal(dataset[index]['label'], expected)


def test_cocostuff10k_mat_labels(tmp_path):
    dst, counts, raw, _ = _prepared('cocostuff10k', tmp_path)
    dataset = CocoStuff10k(transforms=[], dataset_root=dst, mode='val')
    assert len(dataset) == counts['test']
    for index, (image, _) in enumerate(dataset.file_list):
        label = raw['test'][os.path.basename(image)[:-4]]
        np.testing.assert_array_equal(
            dataset[index]['label'][0],
            np.where(label == 0, 255, label.astype(int) - 1))


def test_lip_labels(tmp_path):
    dst, counts, raw, _ = _prepared('lip', tmp_path)
    dataset = LIP(transforms=[], dataset_root=dst, mode='train')
    assert len(dataset) == counts['train']
    for index, (image, _) in enumerate(dataset.file_list):
        np.testing.assert_array_equal(
            dataset[index]['label'], raw['train'][os.path.basename(image)[:-4]])


@pytest.mark.parametrize('name', NAMES)
def test_published_configs_read_the_prepared_folder(name, tmp_path):
    dst, counts, _, _ = _prepared(name, tmp_path)
    info = official(name)
    for config in CONFIGS[name]:
        builder = Builder(read_config(os.path.join(REPO_ROOT, config),
                                      _opts(dst)), config)
        for where, key in (('train_dataset', 'train'), ('val_dataset', 'val')):
            dataset = getattr(builder, where)
            assert len(dataset) == counts[info['config_splits'][key]]
            sample = dataset[len(dataset) - 1]  # the config's transforms
            assert sample['img'].ndim == 3
        assert check_config(os.path.join(REPO_ROOT, config), workers=1,
                            opts=_opts(dst)) == []


# ------------------------------------------------------------------- refused
def test_missing_archive_names_it_and_where_to_download(tmp_path):
    layouts.write_lip_downloads(str(tmp_path / 'src'))
    os.remove(tmp_path / 'src' / 'TrainVal_parsing_annotations.zip')
    dst = tmp_path / 'data' / 'LIP'
    with pytest.raises(PrepareError, match=r'TrainVal_parsing_annotations'
                       r'\.zip.*http://sysu-hcp\.net/lip'):
        prepare('lip', str(tmp_path / 'src'), str(dst), workers=1)
    assert not dst.exists()  # nothing that looks complete


def test_official_counts_are_enforced(tmp_path):
    layouts.write_lip_downloads(str(tmp_path / 'src'))
    with pytest.raises(PrepareError, match=r'train split: 3 images, but the '
                       r'official split has 30462.(.|\n)*download TrainVal_'
                       r'images\.zip and TrainVal_parsing_annotations\.zip '
                       r'from http://sysu-hcp\.net/lip/overview\.php again '
                       r'and run with --fresh'):
        prepare('lip', str(tmp_path / 'src'), str(tmp_path / 'LIP'),
                workers=1)
    assert not (tmp_path / 'LIP').exists()


def test_listed_file_missing_from_the_download(tmp_path):
    counts, raw, _ = _downloads('cocostuff10k', tmp_path / 'dl')
    missing = 'images/{}.jpg'.format(sorted(raw['test'])[0])
    with zipfile.ZipFile(str(tmp_path / 'dl' / 'cocostuff-10k-v1.1.zip')) as zf:
        zf.extractall(str(tmp_path / 'src'))
    os.remove(tmp_path / 'src' / missing)
    with pytest.raises(PrepareError, match=r'cocostuff10k: .*{} does not '
                       r'exist, but the download lists it.*download '
                       r'cocostuff-10k-v1\.1\.zip from https://github\.com/'
                       r'nightrome/cocostuff10k'.format(missing)):
        prepare('cocostuff10k', str(tmp_path / 'src'), str(tmp_path / 'out'),
                workers=1, counts=counts)


def _truncate(path, keep=0.6):
    data = open(path, 'rb').read()
    with open(path, 'wb') as f:
        f.write(data[:int(len(data) * keep)])


@pytest.mark.parametrize('name,archive,keep', [
    ('cityscapes', 'gtFine_trainvaltest.zip', 0.6),
    ('voc12aug', 'VOCtrainval_11-May-2012.tar', 0.6),  # at a header
    ('voc12aug', 'VOCtrainval_11-May-2012.tar', 0.55),  # inside a member
    ('voc12aug', 'benchmark.tgz', 0.6),
])
def test_truncated_archive_is_refused(name, archive, keep, tmp_path):
    counts, _, _ = _downloads(name, tmp_path / 'src')
    _truncate(str(tmp_path / 'src' / archive), keep=keep)
    with pytest.raises(PrepareError) as err:
        prepare(name, str(tmp_path / 'src'), str(tmp_path / 'out'),
                workers=1, counts=counts)
    text = str(err.value)
    info = official(name)
    page = [p.get('page', info['page']) for p in info['parts'].values()
            if p['archive'] == archive][0]
    assert archive in text and page in text
    assert 'is truncated or damaged' in text
    assert not (tmp_path / 'out').exists()


def test_damaged_zip_member_is_refused(tmp_path):
    counts, _, _ = _downloads('ade20k', tmp_path / 'src')
    path = str(tmp_path / 'src' / 'ADEChallengeData2016.zip')
    with zipfile.ZipFile(path) as zf:
        info = zf.getinfo('ADEChallengeData2016/annotations/training/'
                          'ADE_train_00000001.png')
    data = bytearray(open(path, 'rb').read())
    start = info.header_offset + 30 + len(info.filename) + 10
    data[start:start + 8] = b'\xff' * 8  # stored member: bytes flipped
    open(path, 'wb').write(bytes(data))
    with pytest.raises(PrepareError, match=r'ADEChallengeData2016\.zip is '
                       r'truncated or damaged \(Bad CRC-32'):
        prepare('ade20k', str(tmp_path / 'src'), str(tmp_path / 'out'),
                workers=1, counts=counts)


@pytest.mark.parametrize('member', ['../evil.txt', '/tmp/evil.txt',
                                    'a/../../evil.txt'])
@pytest.mark.parametrize('kind', ['zip', 'tgz'])
def test_malicious_member_is_refused(member, kind, tmp_path):
    src = tmp_path / 'deep' / 'src'
    layouts.write_lip_downloads(str(src))
    name = 'TrainVal_images.zip'
    members = {'TrainVal_images/train_id.txt': b'x\n', member: b'evil'}
    if kind == 'zip':
        layouts.write_archive(str(src / name), members)
    else:  # prepare reads what the archive is, not what it is called
        layouts.write_archive(str(tmp_path / 'x.tgz'), members)
        shutil.move(str(tmp_path / 'x.tgz'), str(src / name))
    with pytest.raises(PrepareError, match=r'TrainVal_images\.zip: member '
                       r'.*evil\.txt.* (absolute path|"\.\." component); '
                       r'refusing'):
        prepare('lip', str(src), str(tmp_path / 'deep' / 'LIP'), workers=1)
    assert not list(tmp_path.rglob('evil.txt'))
    if member.startswith('/'):
        assert not os.path.exists(member)


def test_link_member_is_refused(tmp_path):
    layouts.write_lip_downloads(str(tmp_path / 'src'))
    path = tmp_path / 'src' / 'TrainVal_images.zip'
    os.remove(path)
    with tarfile.open(str(path), 'w') as tf:
        info = tarfile.TarInfo('TrainVal_images/train_images/a.jpg')
        info.type, info.linkname = tarfile.SYMTYPE, '/etc/passwd'
        tf.addfile(info)
    with pytest.raises(PrepareError, match='is a link or a device file'):
        prepare('lip', str(tmp_path / 'src'), str(tmp_path / 'LIP'),
                workers=1)


def test_mat_v73_is_refused(tmp_path):
    path = str(tmp_path / 'x.mat')
    header = b'MATLAB 7.3 MAT-file, Platform: GLNXA64'.ljust(116) + \
        b'\0' * 8 + b'\x00\x02' + b'IM'
    open(path, 'wb').write(header + b'\x89HDF\r\n\x1a\n' + b'\0' * 64)
    with pytest.raises(PrepareError, match=r'v7\.3 \(HDF5\).*v5'):
        read_mat(path, 'S')
    buf = io.BytesIO()
    sio.savemat(buf, {'S': np.ones((2, 2), np.uint16)})
    open(path, 'wb').write(buf.getvalue())
    assert read_mat(path, 'S').sum() == 4


# ----------------------------------------------------------------- restarts
def test_interrupted_prepare_continues(tmp_path):
    src, dst = tmp_path / 'src', tmp_path / 'data' / 'ADEChallengeData2016'
    counts, raw, _ = _downloads('ade20k', src)
    archive = src / 'ADEChallengeData2016.zip'
    shutil.move(str(archive), str(tmp_path / 'later.zip'))
    with pytest.raises(PrepareError, match='ADEChallengeData2016.zip'):
        prepare('ade20k', str(src), str(dst), workers=1, counts=counts)
    # A half-written extraction of an interrupted run is redone ...
    partial = tmp_path / 'data' / 'ADEChallengeData2016.partial'
    (partial / '.extract' / 'all.tmp' / 'junk').mkdir(parents=True)
    shutil.move(str(tmp_path / 'later.zip'), str(archive))
    assert prepare('ade20k', str(src), str(dst), workers=1,
                   counts=counts) == counts
    assert not partial.exists()
    assert sorted(os.listdir(dst)) == ['.prepared.yml', 'annotations',
                                       'images', 'objectInfo150.txt',
                                       'sceneCategories.txt']
    # ... and a finished one is not redone.
    os.remove(archive)
    assert prepare('ade20k', str(src), str(dst), workers=1,
                   counts=counts) == counts


def test_converted_files_of_an_interrupted_run_are_kept(tmp_path):
    counts, raw, _ = _downloads('cityscapes', tmp_path / 'src')
    dst = tmp_path / 'cityscapes'
    label = (tmp_path / 'cityscapes.partial' / 'gtFine' / 'val' / 'frankfurt' /
             'frankfurt_000000_000019_gtFine_labelTrainIds.png')
    label.parent.mkdir(parents=True)
    Image.fromarray(np.full(raw['val']['frankfurt_000000_000019'].shape, 3,
                            np.uint8)).save(str(label))
    prepare('cityscapes', str(tmp_path / 'src'), str(dst), workers=1,
            counts=counts)
    kept = dst / 'gtFine' / 'val' / 'frankfurt' / label.name
    assert (_png(str(kept)) == 3).all()  # written before, not redone


def test_existing_foreign_dst_is_refused(tmp_path):
    layouts.write_lip_downloads(str(tmp_path / 'src'))
    (tmp_path / 'LIP').mkdir()
    (tmp_path / 'LIP' / 'mine.txt').write_text('x')
    with pytest.raises(PrepareError, match='was not written by prepare'):
        prepare('lip', str(tmp_path / 'src'), str(tmp_path / 'LIP'))


def test_extracted_downloads(tmp_path):
    counts, raw, _ = _downloads('lip', tmp_path / 'dl')
    for archive in ('TrainVal_images.zip', 'TrainVal_parsing_annotations.zip'):
        with zipfile.ZipFile(str(tmp_path / 'dl' / archive)) as zf:
            zf.extractall(str(tmp_path / 'src'))
    os.remove(tmp_path / 'src' / 'TrainVal_images' / 'val_id.txt')
    dst = str(tmp_path / 'LIP')
    assert prepare('lip', str(tmp_path / 'src'), dst, workers=1,
                   counts=counts) == counts
    for stem, label in raw['val'].items():
        np.testing.assert_array_equal(
            _png(os.path.join(dst, 'val_segmentations', stem + '.png')), label)
    # a missing id list is written from the annotation file names
    with open(os.path.join(dst, 'val_id.txt')) as f:
        assert f.read().split() == sorted(raw['val'])


# -------------------------------------------------------------------- check
LIP_CONFIG = os.path.join(REPO_ROOT, CONFIGS['lip'][0])


def test_check_reports_each_broken_case(tmp_path, capsys):
    dst, counts, raw, _ = _prepared('lip', tmp_path)
    assert check_config(LIP_CONFIG, workers=2, opts=_opts(dst)) == []
    out = capsys.readouterr().out
    assert 'train_dataset: LIP (mode train), 3 images' in out
    assert 'val_dataset: LIP (mode val), 2 images' in out
    assert 'share of the pixels per class id' in out
    assert out.count('warning: ') == 1
    assert 'the published lip result used the official splits ' \
        'train_dataset 30462, val_dataset 10000, but this run reads ' \
        'train_dataset 3, val_dataset 2' in out
    # A run meant to reproduce the row (reproduce without --iters) refuses
    # other split sizes.
    refused = check_config(LIP_CONFIG, workers=2, opts=_opts(dst),
                           official_splits=True)
    assert len(refused) == 1 and refused[0].endswith(
        'train_dataset 3, val_dataset 2; it will not reproduce the published '
        'number (README, Data).')
    capsys.readouterr()
    train = sorted(raw['train'])
    val = sorted(raw['val'])
    # out of range, size mismatch, unreadable image, missing label
    bad = np.array(Image.open(os.path.join(dst, 'train_segmentations',
                                           train[0] + '.png')))
    bad[0, 0] = 40
    os.remove(os.path.join(dst, 'train_segmentations', train[0] + '.png'))
    Image.fromarray(bad).save(os.path.join(dst, 'train_segmentations',
                                           train[0] + '.png'))
    os.remove(os.path.join(dst, 'train_segmentations', train[1] + '.png'))
    Image.fromarray(np.zeros((5, 5), np.uint8)).save(
        os.path.join(dst, 'train_segmentations', train[1] + '.png'))
    _truncate(os.path.join(dst, 'val_images', val[0] + '.jpg'), keep=0.02)
    os.remove(os.path.join(dst, 'val_segmentations', val[1] + '.png'))
    problems = check_config(LIP_CONFIG, workers=1, opts=_opts(dst))
    assert len(problems) == 4 and all('\n' not in p for p in problems)
    assert any('out of range' in p and train[0] in p and '40' in p
               for p in problems)
    assert any('size mismatch' in p and train[1] in p and '5x5' in p
               for p in problems)
    assert any('unreadable' in p and val[0] in p and 'cannot be read' in p
               for p in problems)
    assert any('unreadable' in p and val[1] in p and 'has no label' in p
               for p in problems)
    # prepare's own verification catches the same
    with pytest.raises(PrepareError) as err:
        verify('lip', dst, counts)
    text = str(err.value)
    for i in (train[0], train[1], val[1]):
        assert i in text
    assert '4 problem(s)' in text or '3 problem(s)' in text


def test_check_command_exit_status(tmp_path, capsys):
    dst, _, raw, _ = _prepared('lip', tmp_path)
    opts = ['--opts'] + _opts(dst)
    assert main(['check', '--config', LIP_CONFIG, '--workers', '1'] +
                opts) == 0
    os.remove(os.path.join(dst, 'val_images', sorted(raw['val'])[0] + '.jpg'))
    with pytest.raises(SystemExit) as err:
        main(['check', '--config', LIP_CONFIG, '--workers', '1'] + opts)
    assert err.value.code == 1
    assert 'does not exist' in capsys.readouterr().out


def test_check_names_a_missing_dataset_root(tmp_path):
    with pytest.raises(SampleError, match=r'dataset_root .*nowhere does not '
                       r'exist.*datasets prepare'):
        check_config(LIP_CONFIG, workers=1,
                     opts=_opts(str(tmp_path / 'nowhere')))


def test_startup_check(tmp_path, capsys):
    dst, counts, raw, _ = _prepared('lip', tmp_path)
    builder = Builder(read_config(LIP_CONFIG, _opts(dst)), LIP_CONFIG)
    train, val = builder.train_dataset, builder.val_dataset
    startup_check(LIP_CONFIG, train, val)
    out = capsys.readouterr().out
    assert 'train_dataset: 3 images; first' in out
    assert out.count('WARNING') == 1
    assert 'official splits train_dataset 30462, val_dataset 10000' in out
    startup_check(LIP_CONFIG, train)  # val only with --do_eval
    out = capsys.readouterr().out
    assert 'official splits train_dataset 30462, but this run reads ' \
        'train_dataset 3' in out
    other = str(tmp_path / 'mine.yml')  # not a zoo row: no warning
    shutil.copy(LIP_CONFIG, other)
    startup_check(other, train, val)
    assert 'WARNING' not in capsys.readouterr().out
    os.remove(train.file_list[-1][1])
    with pytest.raises(SampleError, match=r'train_dataset: .*does not exist'):
        startup_check(LIP_CONFIG, train, val)
    train.file_list = []
    with pytest.raises(SampleError, match='train_dataset: LIP at .* has no '
                       'images'):
        startup_check(LIP_CONFIG, train)


# ---------------------------------------------------------------------- CLI
def test_command_line(tmp_path):
    counts, _, _ = _downloads('lip', tmp_path / 'src')
    dst = str(tmp_path / 'LIP')
    assert main(['prepare', 'lip', '--src', str(tmp_path / 'src'), '--dst',
                 dst, '--workers', '1', '--expect', 'train=3', 'val=2']) == 0
    assert os.path.isfile(os.path.join(dst, '.prepared.yml'))
    # the synthetic data set: the original command line and the sub-command
    main(['--root', str(tmp_path / 'syn1'), '--num_train', '1', '--num_val',
          '1'])
    main(['synthetic', '--root', str(tmp_path / 'syn2'), '--num_train', '1',
          '--num_val', '1'])
    for root in ('syn1', 'syn2'):
        assert (tmp_path / root / 'train.txt').read_text().count('\n') == 1
    env = dict(os.environ, PYTHONPATH=REPO_ROOT)
    result = subprocess.run(
        [sys.executable, '-m', 'paddleseg_ctx.datasets', 'prepare', 'ade20k',
         '--src', str(tmp_path / 'src'), '--dst', str(tmp_path / 'ADE')],
        capture_output=True, text=True, env=env)
    assert result.returncode == 1
    assert result.stderr.strip().splitlines()[-1].startswith(
        'error: ade20k: --src {} has neither ADEChallengeData2016.zip'.format(
            tmp_path / 'src'))


def test_readme_data_section_names_each_download_and_command():
    with open(os.path.join(REPO_ROOT, 'README.md'), encoding='utf-8') as f:
        readme = f.read()
    section = readme[readme.index('\n## Data\n'):]
    section = section[:section.index('\n## ', 5)]
    for name, info in official().items():
        assert 'prepare {} '.format(name) in section
        assert '--dst {}'.format(info['dataset_root']) in section
        for part in info['parts'].values():
            assert '`{}`'.format(part['archive']) in section
            assert part.get('page', info['page']) in section
        train, val = (info['splits'][info['config_splits'][k]]
                      for k in ('train', 'val'))
        assert '{} / {}'.format(train, val) in section
    assert 'datasets check --config configs/' in section
    assert os.path.isfile(os.path.join(REPO_ROOT, 'docs', 'datasets.md'))
