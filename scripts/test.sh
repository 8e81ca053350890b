#!/usr/bin/env bash
# Run the test suite: sets up the environment (see scripts/env.sh), then pytest.
# Extra arguments go to pytest, e.g. `bash scripts/test.sh -k ginet`.
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
ENV_EXTRAS="pytest paddle2onnx onnxruntime onnx" ENV_PARITY=1 . "$ROOT/scripts/env.sh"
cd "$ROOT"
exec python -m pytest tests "$@"
