#!/usr/bin/env bash
# End-to-end demo on CPU, nothing downloaded:
#   set-up -> synthetic data -> train (VisualDL log) -> evaluate (mIoU >= 0.5)
#   -> export for Paddle Inference -> colourised predictions on validation images.
# Usage: bash scripts/demo.sh [OUTPUT_DIR]   (default: output/demo)
set -eo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
# shellcheck disable=SC1091
. "$ROOT/scripts/env.sh"
cd "$ROOT"

CONFIG=configs/demo/gcnet_resnet18vd_os16_synthetic_128x128_200.yml
DATA=data/synthetic
OUT="${1:-output/demo}"
MIN_MIOU=0.5
# Paddle's CPU kernels use one thread unless told otherwise.
export OMP_NUM_THREADS="${OMP_NUM_THREADS:-$(nproc)}"
START=$SECONDS
step() { echo; echo "=== [$((SECONDS - START))s] $*"; }

step "1/5 generating the synthetic data set in $DATA"
python -m paddleseg_ctx.datasets --root "$DATA" --num_train 300 --num_val 60 --seed 0

step "2/5 training CtxGCNet (ResNet18_vd) with $CONFIG"
python -m paddleseg_ctx.train --config "$CONFIG" --save_dir "$OUT" \
    --do_eval --save_interval 100 --log_iters 25 --use_vdl --seed 0 --num_workers 0

step "3/5 evaluating $OUT/best_model"
python -m paddleseg_ctx.val --config "$CONFIG" \
    --model_path "$OUT/best_model/model.pdparams" 2>&1 | tee "$OUT/val.log"
MIOU=$(grep -o 'mIoU: [0-9.]*' "$OUT/val.log" | tail -1 | cut -d' ' -f2)
echo "mIoU: $MIOU"

step "4/5 exporting for Paddle Inference to $OUT/inference_model"
python -m paddleseg_ctx.export --config "$CONFIG" \
    --model_path "$OUT/best_model/model.pdparams" --save_dir "$OUT/inference_model"

step "5/5 predicting the validation images into $OUT/predictions"
python -m paddleseg_ctx.predict --config "$CONFIG" \
    --model_path "$OUT/best_model/model.pdparams" \
    --image_path "$DATA/val.txt" --save_dir "$OUT/predictions"

cat <<MSG

=== done in $((SECONDS - START))s
mIoU: $MIOU  (required: >= $MIN_MIOU)
VisualDL log:         $OUT/vdlrecords.*   ->  visualdl --logdir $OUT
checkpoints:          $OUT/best_model, $OUT/iter_*
exported model:       $OUT/inference_model (deploy.yaml, model.json, model.pdiparams)
colourised masks:     $OUT/predictions/pseudo_color_prediction/images/
overlays:             $OUT/predictions/added_prediction/images/
MSG
python - "$MIOU" "$MIN_MIOU" <<'PY'
import sys
miou, need = float(sys.argv[1]), float(sys.argv[2])
if miou < need:
    sys.exit('demo FAILED: mIoU {:.4f} < {}'.format(miou, need))
PY
