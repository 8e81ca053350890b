#!/bin/bash
# Prepare a TIPC run (PaddleSeg's test_tipc/prepare.sh, without downloads):
# install paddleseg_ctx and its ONNX extra only if they are not importable,
# then write the synthetic data set to test_tipc/data/synthetic, sized for MODE.
#
#   bash test_tipc/prepare.sh <train_infer_python.txt> <MODE>
#
# Run from the repository root.
set -o errexit
set -o nounset
source test_tipc/common_func.sh

FILENAME=$1
MODE=$2
mapfile -t lines < "${FILENAME}"
python=$(func_parser_value "${lines[2]}")

# Images are 128x128; the test configs train on 64x64 crops.
case ${MODE} in
    lite_train_lite_infer) num_train=8; num_val=4 ;;
    lite_train_whole_infer) num_train=8; num_val=20 ;;
    whole_train_whole_infer) num_train=200; num_val=50 ;;
    whole_infer)
        num_train=0; num_val=20
        # whole_infer exports weights a lite_train_lite_infer run left behind.
        IFS='|' read -r -a infer_models <<< "$(func_parser_value "${lines[36]}")"
        for weights in "${infer_models[@]}"; do
            if [ ! -e "${weights}" ]; then
                echo "${FILENAME}: infer_model ${weights} does not exist; run the" \
                    "lite_train_lite_infer chain first (see test_tipc/README.md)." >&2
                exit 1
            fi
        done
        ;;
    *)
        echo "Unknown MODE '${MODE}': use lite_train_lite_infer, lite_train_whole_infer," \
            "whole_train_whole_infer or whole_infer." >&2
        exit 2
        ;;
esac

# The chains export to ONNX and run ONNX Runtime: the [onnx] extra, pinned.
if ! ${python} -c "import importlib.util as u, sys; sys.exit(any(u.find_spec(m) is None for m in ('paddleseg_ctx', 'paddle2onnx', 'onnxruntime')))"; then
    ${python} -m pip install -c constraints.txt -r requirements.txt paddle2onnx onnxruntime onnx
    ${python} -m pip install --no-deps -e .
fi

# --num_classes must match num_classes in test_tipc/configs/_base_/synthetic.yml.
rm -rf test_tipc/data/synthetic
${python} -m paddleseg_ctx.datasets --root test_tipc/data/synthetic \
    --num_train ${num_train} --num_val ${num_val} --size 128 128 --num_classes 6
