#!/usr/bin/env bash
# Test paddleseg_ctx against several PaddlePaddle 3.x CPU builds, one virtual
# environment each: the package is installed from this checkout with its
# install_requires (which name no Paddle build) next to the chosen Paddle,
# then a subset of the tests runs -- the compatibility fixes (each switches
# itself on or off by probing the installed Paddle), export to Paddle and
# ONNX with inference on both backends, a short training, installation.
#
#   bash scripts/test_paddle_versions.sh [VERSION ...]   # default: 3.0.0 3.3.1
#
# Slow (a few minutes per version, mostly pip), so not part of scripts/test.sh.
# Environments are kept in $PADDLE_VERSIONS_DIR (default
# /tmp/paddleseg_ctx-paddle-versions) and reused; logs go there too.
set -uo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${PADDLE_VERSIONS_DIR:-/tmp/paddleseg_ctx-paddle-versions}"
VERSIONS=("$@")
[ ${#VERSIONS[@]} -eq 0 ] && VERSIONS=(3.0.0 3.3.1)
TESTS=(
    tests/test_compat.py
    tests/test_install.py
    tests/test_gcnet.py::test_export_matches_dygraph
    "tests/test_deploy.py::test_exported_logits_match_dygraph"
    "tests/test_deploy.py::test_infer_writes_dygraph_argmax"
    "tests/test_deploy.py::test_onnx_keeps_pad_values"
    "tests/test_cli.py::test_train_logs_progress_checkpoints_and_visualdl"
    "tests/test_cli.py::test_our_registered_model_trains_and_exports"
)
mkdir -p "$DIR"
# The pinned set without its Paddle, which each environment chooses.
grep -v '^paddlepaddle==' "$ROOT/constraints.txt" > "$DIR/constraints.txt"
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
summary=()
status=0
for version in "${VERSIONS[@]}"; do
    start=$SECONDS
    venv="$DIR/paddle-$version"
    log="$DIR/paddle-$version.log"
    echo "=== Paddle $version: $venv (log: $log)"
    (
        set -e
        [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
        pip="$venv/bin/python -m pip install -q --disable-pip-version-check -c $DIR/constraints.txt"
        $pip "paddlepaddle==$version"
        $pip "$ROOT[onnx,test]"
        # install_requires must have left the chosen Paddle in place.
        "$venv/bin/python" -c "import importlib.metadata as m, sys; v = m.version('paddlepaddle'); sys.exit(v != '$version' and 'paddlepaddle ' + v)"
        cd "$ROOT"
        "$venv/bin/python" -c "import paddle, paddleseg_ctx; from paddleseg_ctx import compat; print('paddle', paddle.__version__, '- fixes applied:', ' '.join(compat.applied()))"
        "$venv/bin/python" -m pytest -q -p no:cacheprovider "${TESTS[@]}"
    ) > "$log" 2>&1
    result=$?
    fixes=$(grep -m1 '^paddle .* fixes applied' "$log" || echo 'paddle did not import')
    tests=$(grep -E '^[0-9]+ (passed|failed)|^(FAILED|ERROR) ' "$log" | tr '\n' ';')
    summary+=("Paddle $version: exit $result in $((SECONDS - start)) s; $fixes; ${tests:-see log}")
    [ $result -eq 0 ] || status=1
done
printf '%s\n' "${summary[@]}"
exit $status
