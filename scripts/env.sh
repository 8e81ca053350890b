# Sourced by scripts/demo.sh and scripts/test.sh: make sure paddleseg_ctx and its
# pinned dependencies are importable.  Uses the active virtual environment if
# there is one, otherwise creates/reuses .venv at the repository root.
# Extra pip requirement specs go in ENV_EXTRAS (e.g. ENV_EXTRAS=pytest).
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
STAMP="$VIRTUAL_ENV/.paddleseg_ctx-$(cat "$ROOT/requirements.txt" "$ROOT/constraints.txt" "$ROOT/setup.py" | cksum | cut -d' ' -f1)-$(echo "${ENV_EXTRAS:-}" | cksum | cut -d' ' -f1)"
if [ ! -f "$STAMP" ]; then
    echo "[env] installing paddleseg_ctx and pinned dependencies into $VIRTUAL_ENV"
    python -m pip install -q --disable-pip-version-check \
        -c "$ROOT/constraints.txt" -r "$ROOT/requirements.txt" ${ENV_EXTRAS:-}
    python -m pip install -q --disable-pip-version-check --no-deps -e "$ROOT"
    touch "$STAMP"
fi
export PYTHONWARNINGS="${PYTHONWARNINGS:-ignore::UserWarning:paddle.utils.cpp_extension.extension_utils}"
