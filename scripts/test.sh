#!/usr/bin/env bash
# Run the test suite: sets up the environment (see scripts/env.sh), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ginet`.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
ENV_EXTRAS="pytest paddle2onnx onnxruntime onnx" ENV_PARITY=1 . "$ROOT/scripts/env.sh"
cd "$ROOT"
# PaddleX 3.x in its own environment (it pins other packages than PaddleSeg):
# tests/test_paddlex_export.py runs our PaddleX-layout exports in its predictor.
# PADDLEX=0 skips it (those tests then skip); a failed install only warns.
if [ "${PADDLEX:-1}" != 0 ] && [ -z "${PADDLEX_PYTHON:-}" ]; then
    PX="$ROOT/.venv-paddlex"
    if [ ! -f "$PX/.installed-paddlex-3.7.2" ]; then
        echo "[env] installing PaddleX 3.7.2 into $PX (about 1.7 GB, once)"
        if python3 -m venv "$PX" && "$PX/bin/python" -m pip install -q --disable-pip-version-check \
                paddlepaddle==3.3.1 'paddlex[cv]==3.7.2'; then
            touch "$PX/.installed-paddlex-3.7.2"
        else
            echo "[env] warning: PaddleX could not be installed; its tests will skip"
        fi
    fi
    if [ -f "$PX/.installed-paddlex-3.7.2" ]; then
        export PADDLEX_PYTHON="$PX/bin/python"
    fi
fi
exec python -m pytest tests "$@"
