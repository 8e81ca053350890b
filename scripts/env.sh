# Sourced by scripts/demo.sh and scripts/test.sh: make sure paddleseg_ctx and its
# pinned dependencies are importable.  Uses the active virtual environment if
# there is one, otherwise creates/reuses .venv at the repository root.
# Extra pip requirement specs go in ENV_EXTRAS (e.g. ENV_EXTRAS=pytest).
# ENV_PARITY=1 also installs the PyTorch references of the parity tests
# (requirements-parity.txt: CPU torch, mmsegmentation, sssegmentation).
set -e
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [ -z "${VIRTUAL_ENV:-}" ]; then
    if [ ! -x "$ROOT/.venv/bin/python" ]; then
        echo "[env] creating $ROOT/.venv"
        python3 -m venv "$ROOT/.venv"
    fi
    # shellcheck disable=SC1091
    . "$ROOT/.venv/bin/activate"
fi
PIP="python -m pip install -q --disable-pip-version-check -c $ROOT/constraints.txt"
STAMP="$VIRTUAL_ENV/.paddleseg_ctx-$(cat "$ROOT/requirements.txt" "$ROOT/constraints.txt" "$ROOT/setup.py" | cksum | cut -d' ' -f1)-$(echo "${ENV_EXTRAS:-}" | cksum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ]; then
    echo "[env] installing paddleseg_ctx and pinned dependencies into $VIRTUAL_ENV"
    $PIP -r "$ROOT/requirements.txt" ${ENV_EXTRAS:-}
    python -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
    touch "$STAMP"
fi
if [ "${ENV_PARITY:-0}" = 1 ]; then
    PARITY_STAMP="$VIRTUAL_ENV/.paddleseg_ctx-parity-$(cat "$ROOT/requirements-parity.txt" "$ROOT/constraints.txt" | cksum | cut -d' ' -f1)"
    if [ ! -f "$PARITY_STAMP" ]; then
        echo "[env] installing the PyTorch references of the parity tests (CPU torch, mmseg, ssseg)"
        $PIP torch==2.13.0
        $PIP -r "$ROOT/requirements-parity.txt"
        $PIP --no-deps --no-build-isolation sssegmentation==1.7.0
        touch "$PARITY_STAMP"
    fi
fi
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning:paddle.utils.cpp_extension.extension_utils}"
