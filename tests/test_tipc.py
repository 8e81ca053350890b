"""TIPC scripts under test_tipc/: the line layout of every
train_infer_python.txt, one real lite_train_lite_infer chain (GCNet, tiny
settings; every model's full chain with `-m slow`) and the runner's exit
status when a command fails.

The chains run in a temporary directory that mirrors the repository root
(the scripts and configs are symlinked), so data and outputs stay out of the
source tree.
"""
import re
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import paddle
import pytest
from paddleseg.cvlibs import Config, SegBuilder
from PIL import Image

import paddleseg_ctx  # noqa: F401  (registers CtxGCNet for the dygraph check)
from paddleseg_ctx.testing.families import FAMILIES

ROOT = Path(__file__).resolve().parents[1]
TIPC = ROOT / 'test_tipc'
MODELS = sorted({f.family.lower() for f in FAMILIES.values()})
TRAIN_MODES = ('lite_train_lite_infer', 'lite_train_whole_infer',
               'whole_train_whole_infer')

# PaddleSeg's train_infer_python.txt, line by line: '=name' is a section
# header, '##' a separator, None a free `key:value` slot; any other entry is
# the key the runner expects on that line.
LAYOUT = [
    '=train_params', 'model_name', 'python', 'gpu_list', '--device',
    '--precision', '--iters', '--save_dir', '--batch_size', '--model_path',
    'train_model_name', 'train_infer_img_dir', None, '##', 'trainer',
    'norm_train', 'pact_train', 'fpgm_train', 'distill_train', None, None,
    '##', '=eval_params', 'eval', None, '##', '=export_params', '--save_dir',
    '--model_path', 'norm_export', 'quant_export', 'fpgm_export',
    'distill_export', 'export1', 'export2', '=infer_params', 'infer_model',
    'infer_export', 'infer_quant', 'inference', '--device', '--enable_mkldnn',
    '--cpu_threads', '--batch_size', '--use_trt', '--precision', '--config',
    '--image_path', '--save_log_path', '--benchmark', '--save_dir',
    '--backend'
]

# Print key<TAB>value of every line as common_func.sh parses them, then the
# per-mode iters and batch size.
BASH_PARSE = r'''
source test_tipc/common_func.sh
mapfile -t lines < "$1"
for line in "${lines[@]}"; do
    printf '%s\t%s\n' "$(func_parser_key "$line")" "$(func_parser_value "$line")"
done
for MODE in ''' + ' '.join(TRAIN_MODES) + r'''; do
    printf '%s\t%s\t%s\n' "$MODE" "$(func_parser_params "${lines[6]}")" \
        "$(func_parser_params "${lines[8]}")"
done
'''


def read_lines(model):
    return (TIPC / 'configs' / model / 'train_infer_python.txt').read_text(
    ).splitlines()


@pytest.mark.parametrize('model', MODELS)
def test_config_layout(model):
    lines = read_lines(model)
    assert len(lines) == len(LAYOUT)
    for i, (line, expected) in enumerate(zip(lines, LAYOUT)):
        where = 'line {}: {!r}'.format(i + 1, line)
        if expected is not None and expected.startswith('='):
            assert re.fullmatch('=+{}=+'.format(expected[1:]), line), where
        elif expected == '##':
            assert line == '##', where
        else:
            assert ':' in line and line == line.strip(), where
            assert expected in (None, line.split(':', 1)[0]), where
    values = [line.split(':', 1)[-1] for line in lines]
    assert values[1] == model
    assert len(values[3].split('|')) == len(values[4].split('|'))  # gpu_list, --device
    assert values[39] == '-m paddleseg_ctx.infer'
    assert sorted(values[51].split('|')) == ['onnxruntime', 'paddle']
    assert '--format both' in values[29] and '--format both' in values[37]

    # train, eval and both exports use one test config, which exists.
    configs = {
        re.search(r'--config (\S+)', values[i]).group(1)
        for i in (15, 23, 29, 37)
    }
    assert len(configs) == 1
    assert (ROOT / configs.pop()).is_file()

    # The bash parser reads what Python reads, and every train mode has
    # integer iters and batch size.
    out = subprocess.run(
        ['bash', '-c', BASH_PARSE, 'parse', str(
            TIPC / 'configs' / model / 'train_infer_python.txt')],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout
    parsed = [row.split('\t') for row in out.splitlines()]
    expected = [[line.split(':', 1)[0], line.split(':', 1)[1]]
                if ':' in line else [line, ''] for line in lines]
    assert parsed[:len(lines)] == expected
    for mode, iters, batch_size in parsed[len(lines):]:
        assert int(iters) > 0 and int(batch_size) > 0, mode


def tipc_workdir(tmp_path, model, replace):
    """A directory laid out like the repository root for the TIPC scripts,
    with a copy of ``model``'s config whose lines ``replace`` ({index:
    line}) are swapped; returns the config path relative to the directory."""
    (tmp_path / 'test_tipc').mkdir()
    for name in ('common_func.sh', 'prepare.sh',
                 'test_train_inference_python.sh', 'configs'):
        (tmp_path / 'test_tipc' / name).symlink_to(TIPC / name)
    lines = read_lines(model)
    lines[2] = 'python:' + sys.executable
    for index, line in replace.items():
        lines[index] = line
    (tmp_path / 'test_tipc' / 'tiny.txt').write_text('\n'.join(lines) + '\n')
    return 'test_tipc/tiny.txt'


def run_script(workdir, script, *args):
    return subprocess.run(
        ['bash', 'test_tipc/' + script] + list(args),
        cwd=workdir, capture_output=True, text=True, timeout=600)


def results_log(workdir, model, mode):
    path = workdir / 'test_tipc' / 'output' / model / mode / 'results_python.log'
    return [line for line in path.read_text().splitlines() if line.startswith('Run')]


def dygraph_labels(config, weights, image_paths):
    """Label maps of the trained model run in this process (dygraph), with
    the Normalize preprocessing re-done in numpy."""
    model = SegBuilder(Config(str(config))).model
    model.set_state_dict(paddle.load(str(weights)))
    model.eval()
    labels = []
    for path in image_paths:
        image = cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)
        image = (image.astype('float32') / 255 - 0.5) / 0.5
        with paddle.no_grad():
            logit = model(paddle.to_tensor(image.transpose(2, 0, 1)[None]))[0]
        labels.append(logit.argmax(axis=1)[0].numpy())
    return labels


def check_lite_chain(tmp_path, model, replace):
    """Run prepare.sh and the lite_train_lite_infer chain of ``model`` with
    config lines ``replace``d; every command succeeds, and every inference
    run (each backend) writes the trained model's dygraph argmax."""
    mode = 'lite_train_lite_infer'
    txt = tipc_workdir(tmp_path, model, replace)
    prepare = run_script(tmp_path, 'prepare.sh', txt, mode)
    assert prepare.returncode == 0, prepare.stderr
    chain = run_script(tmp_path, 'test_train_inference_python.sh', txt, mode)
    assert chain.returncode == 0, chain.stdout[-3000:] + chain.stderr[-3000:]

    lines = (tmp_path / txt).read_text().splitlines()
    runs = 1
    for index in (42, 43, 51):  # --cpu_threads, --batch_size, --backend
        runs *= len(lines[index].split(':', 1)[1].split('|'))
    log = results_log(tmp_path, model, mode)
    assert len(log) == 3 + runs and all(
        line.startswith('Run successfully') for line in log), log
    for step, line in zip(['train', 'val', 'export'], log):
        assert 'paddleseg_ctx.' + step in line
    assert all('paddleseg_ctx.infer' in line for line in log[3:])

    data = tmp_path / 'test_tipc' / 'data' / 'synthetic'
    names = [row.split()[0]
             for row in (data / 'val.txt').read_text().splitlines()]
    out = tmp_path / 'test_tipc' / 'output' / model / mode
    iters = lines[6].split(':', 1)[1].split('|')[0].split('=')[1]
    config = re.search(r'--config (\S+)', lines[15]).group(1)
    expected = dygraph_labels(
        ROOT / config, out / 'norm_train_gpus_-1_autocast_null' /
        'iter_{}'.format(iters) / 'model.pdparams',
        [data / name for name in names])
    result_dirs = sorted(out.glob('python_infer_cpu_*_results'))
    assert len(result_dirs) == runs
    for backend in ('paddle', 'onnxruntime'):
        assert any(d.name.endswith('backend_{}_results'.format(backend))
                   for d in result_dirs)
    for result_dir in result_dirs:
        for name, label in zip(names, expected):
            predicted = np.array(Image.open(
                result_dir / 'pseudo_color_prediction' / name))
            assert predicted.shape == label.shape
            assert (predicted == label).mean() > 0.99, result_dir


def test_lite_chain_gcnet(tmp_path):
    # Tiny: 2 iterations, one thread; batch sizes 1 and 2, both backends.
    check_lite_chain(tmp_path, 'gcnet', {
        6: '--iters:lite_train_lite_infer=2',
        42: '--cpu_threads:1',
    })


@pytest.mark.slow
@pytest.mark.parametrize('model', MODELS)
def test_lite_chain(tmp_path, model, request):
    # About 80 s per model: only when slow tests are asked for.
    if 'slow' not in request.config.getoption('markexpr'):
        pytest.skip('the full chains run with `-m slow`')
    check_lite_chain(tmp_path, model, {})


def test_runner_exits_nonzero_on_failure(tmp_path):
    # whole_infer with weights that do not exist: export and inference fail.
    txt = tipc_workdir(tmp_path, 'gcnet', {
        36: 'infer_model:./missing/model.pdparams',
        42: '--cpu_threads:1',
        43: '--batch_size:1',
    })
    chain = run_script(tmp_path, 'test_train_inference_python.sh', txt,
                       'whole_infer')
    assert chain.returncode == 1
    log = results_log(tmp_path, 'gcnet', 'whole_infer')
    # The export, then inference with each backend.
    assert len(log) == 3 and all(
        line.startswith('Run failed') for line in log), log
