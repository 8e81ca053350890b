#!/bin/bash
# TIPC basic chain for one model: train -> eval -> export -> inference
# over the grid of the config's infer_params (PaddleSeg's
# test_tipc/test_train_inference_python.sh, driving paddleseg_ctx's CLI).
#
#   bash test_tipc/prepare.sh <train_infer_python.txt> <MODE>
#   bash test_tipc/test_train_inference_python.sh <train_infer_python.txt> <MODE>
#
# Run from the repository root. MODE: lite_train_lite_infer,
# lite_train_whole_infer, whole_train_whole_infer (train, then infer) or
# whole_infer (export `infer_model` and infer). Every command is logged as
# "Run successfully/failed with command - ..." in
# test_tipc/output/<model_name>/<MODE>/results_python.log; unlike PaddleSeg's
# script this one exits with status 1 if any command failed.
source test_tipc/common_func.sh

FILENAME=$1
MODE=$2
case ${MODE} in
    lite_train_lite_infer | lite_train_whole_infer | whole_train_whole_infer | whole_infer) ;;
    *)
        echo "Usage: bash $0 <train_infer_python.txt> <MODE>; MODE is lite_train_lite_infer," \
            "lite_train_whole_infer, whole_train_whole_infer or whole_infer, got '${MODE}'." >&2
        exit 2
        ;;
esac

# The config is read by line index (0-based), as in PaddleSeg; see README.md.
mapfile -t lines < "${FILENAME}"
if [ ${#lines[@]} -ne 52 ]; then
    echo "${FILENAME}: expected the 52-line layout of PaddleSeg's train_infer_python.txt," \
        "got ${#lines[@]} lines; see test_tipc/README.md." >&2
    exit 2
fi
function key() { func_parser_key "${lines[$1]}"; }
function value() { func_parser_value "${lines[$1]}"; }

# train_params
model_name=$(value 1)
python=$(value 2)
gpu_list=$(value 3)
train_device_key=$(key 4)
train_device_list=$(value 4)
autocast_key=$(key 5)
autocast_list=$(value 5)
iters_key=$(key 6)
iters=$(func_parser_params "${lines[6]}")
save_dir_key=$(key 7)
batch_size_key=$(key 8)
batch_size=$(func_parser_params "${lines[8]}")
pretrain_key=$(key 9)
pretrain_value=$(value 9)
train_model_name=$(value 10)
train_infer_img_dir=$(value 11)
train_param_key1=$(key 12)
train_param_value1=$(value 12)
trainer_list=$(value 14)
# Lines 15-20 name the trainers (norm, pact, fpgm, distill, two custom ones);
# trainer k exports with line 29+k.
TRAINER_LINE=15
EXPORT_LINE=29
# eval_params
eval_py=$(value 23)
eval_key1=$(key 24)
eval_value1=$(value 24)
# export_params
export_save_dir_key=$(key 27)
export_weights_key=$(key 28)
# Line 35 (the infer_params header) parses as an empty inference_dir: infer
# from the export directory itself, as PaddleSeg does.
inference_dir=$(value 35)
# infer_params
infer_model_list=$(value 36)
infer_export_list=$(value 37)
inference_py=$(value 39)
infer_device_key=$(key 40)
infer_device_list=$(value 40)
mkldnn_key=$(key 41)
mkldnn_list=$(value 41)
cpu_threads_key=$(key 42)
cpu_threads_list=$(value 42)
infer_batch_key=$(key 43)
infer_batch_list=$(value 43)
trt_key=$(key 44)
trt_list=$(value 44)
precision_key=$(key 45)
precision_list=$(value 45)
deploy_config_key=$(key 46)
image_path_key=$(key 47)
infer_img_dir=$(value 47)
benchmark_key=$(key 49)
benchmark_value=$(value 49)
infer_save_dir_key=$(key 50)
infer_key2=$(key 51)
infer_value2=$(value 51)

LOG_PATH="./test_tipc/output/${model_name}/${MODE}"
mkdir -p "${LOG_PATH}"
status_log="${LOG_PATH}/results_python.log"
echo "------------------------ ${MODE} ------------------------" >> "${status_log}"

# Inference runs named $1 (their logs and results directories), one per
# '|' alternative of the last infer_params line (e.g. `--backend:paddle|onnxruntime`,
# named in the run's name); the other arguments are the grid flags. Uses
# ${infer_flags} set by func_inference.
function run_inference(){
    local name=$1
    shift
    local extra extras
    IFS='|' read -r -a extras <<< "${infer_value2}"
    [ ${#extras[@]} -eq 0 ] && extras=("")
    for extra in "${extras[@]}"; do
        local run_name=${name}
        if [[ -n ${extra} && ${extra} != null && ${infer_key2} != null ]]; then
            run_name="${name}_${infer_key2#--}_${extra}"
        fi
        local log_path="${LOG_PATH}/${run_name}.log"
        local cmd="${python} ${inference_py} $* $(func_set_params "${infer_key2}" "${extra}") \
$(func_set_params "${infer_save_dir_key}" "${LOG_PATH}/${run_name}_results") ${infer_flags}"
        run_command "${cmd}" "${log_path}"
        status_check $? "${cmd}" "${status_log}" "${model_name}" "${log_path}"
    done
}

# Run the predictor with every combination of the infer_params lists on the
# model exported to $1 (a directory holding deploy.yaml), images $2; $3 names
# the training devices in the log names.
function func_inference(){
    local gpu=$3
    local device mkldnn threads batch trt precision
    local devices mkldnns threadss batches trts precisions
    IFS='|' read -r -a devices <<< "${infer_device_list}"
    IFS='|' read -r -a mkldnns <<< "${mkldnn_list}"
    IFS='|' read -r -a threadss <<< "${cpu_threads_list}"
    IFS='|' read -r -a batches <<< "${infer_batch_list}"
    IFS='|' read -r -a trts <<< "${trt_list}"
    IFS='|' read -r -a precisions <<< "${precision_list}"
    infer_flags="$(func_set_params "${deploy_config_key}" "$1/deploy.yaml") \
$(func_set_params "${image_path_key}" "$2") \
$(func_set_params "${benchmark_key}" "${benchmark_value}")"
    for device in "${devices[@]}"; do
        if [ "${device}" != "cpu" ] && [ "${device}" != "gpu" ]; then
            echo "Inference device '${device}' is not supported (cpu or gpu)." | tee -a "${status_log}"
            TIPC_FAILURES=$((TIPC_FAILURES + 1))
            continue
        fi
        local set_device
        set_device=$(func_set_params "${infer_device_key}" "${device}")
        for precision in "${precisions[@]}"; do
            local set_precision
            set_precision=$(func_set_params "${precision_key}" "${precision}")
            for batch in "${batches[@]}"; do
                local set_batch
                set_batch=$(func_set_params "${infer_batch_key}" "${batch}")
                if [ "${device}" = "cpu" ]; then
                    for mkldnn in "${mkldnns[@]}"; do
                        for threads in "${threadss[@]}"; do
                            run_inference "python_infer_cpu_gpus_${gpu}_usemkldnn_${mkldnn}_threads_${threads}_precision_${precision}_batchsize_${batch}" \
                                "${set_device}" "$(func_set_params "${mkldnn_key}" "${mkldnn}")" \
                                "$(func_set_params "${cpu_threads_key}" "${threads}")" "${set_batch}" "${set_precision}"
                        done
                    done
                else
                    for trt in "${trts[@]}"; do
                        run_inference "python_infer_gpu_gpus_${gpu}_usetrt_${trt}_precision_${precision}_batchsize_${batch}" \
                            "${set_device}" "$(func_set_params "${trt_key}" "${trt}")" "${set_batch}" "${set_precision}"
                    done
                fi
            done
        done
    done
}

if [ "${MODE}" = "whole_infer" ]; then
    # Export each infer_model (weights) next to itself, or use it as an
    # exported directory when its infer_export is null; then infer.
    IFS='|' read -r -a infer_models <<< "${infer_model_list}"
    IFS='|' read -r -a infer_exports <<< "${infer_export_list}"
    for i in "${!infer_models[@]}"; do
        infer_model=${infer_models[i]}
        if [ "${infer_exports[i]}" != "null" ]; then
            save_infer_dir=$(dirname "${infer_model}")
            log_path="${LOG_PATH}/whole_infer_export_${i}.log"
            export_cmd="${python} ${infer_exports[i]} \
$(func_set_params "${export_weights_key}" "${infer_model}") \
$(func_set_params "${export_save_dir_key}" "${save_infer_dir}")"
            run_command "${export_cmd}" "${log_path}"
            status_check $? "${export_cmd}" "${status_log}" "${model_name}" "${log_path}"
        else
            save_infer_dir=${infer_model}
        fi
        func_inference "${save_infer_dir}" "${infer_img_dir}" "-1"
    done
else
    IFS='|' read -r -a gpus <<< "${gpu_list}"
    IFS='|' read -r -a train_devices <<< "${train_device_list}"
    IFS='|' read -r -a autocasts <<< "${autocast_list}"
    IFS='|' read -r -a trainers <<< "${trainer_list}"
    for i in "${!gpus[@]}"; do
        gpu=${gpus[i]}
        # gpu_list entries: -1 (CPU), one device id, or comma-separated ids
        # (one process per device via paddle.distributed.launch).
        launch=""
        if [ "${gpu}" = "-1" ]; then
            :
        elif [[ ${gpu} =~ ^[0-9]+$ ]]; then
            export CUDA_VISIBLE_DEVICES=${gpu}
        elif [[ ${gpu} =~ ^[0-9]+(,[0-9]+)+$ ]]; then
            unset CUDA_VISIBLE_DEVICES
            # launch starts an executable, so name the interpreter's path.
            launch="-m paddle.distributed.launch --devices=${gpu} $(command -v "${python}")"
        else
            echo "gpu_list entry '${gpu}' is not supported (-1, an id, or ids like 0,1)." | tee -a "${status_log}"
            TIPC_FAILURES=$((TIPC_FAILURES + 1))
            continue
        fi
        set_device=$(func_set_params "${train_device_key}" "${train_devices[i]}")
        for autocast in "${autocasts[@]}"; do
            for trainer in "${trainers[@]}"; do
                # The trainer's own line, or norm_train's for other names (e.g. amp_train).
                k=0
                for j in 0 1 2 3 4 5; do
                    if [ "$(key $((TRAINER_LINE + j)))" = "${trainer}" ]; then
                        k=${j}
                    fi
                done
                run_train=$(value $((TRAINER_LINE + k)))
                run_export=$(value $((EXPORT_LINE + k)))
                if [ "${run_train}" = "null" ]; then
                    continue
                fi

                save_log="${LOG_PATH}/${trainer}_gpus_${gpu}_autocast_${autocast}"
                log_path="${save_log}.log"
                cmd="${python} ${launch} ${run_train} ${set_device} \
$(func_set_params "${save_dir_key}" "${save_log}") $(func_set_params "${iters_key}" "${iters}") \
$(func_set_params "${pretrain_key}" "${pretrain_value}") $(func_set_params "${autocast_key}" "${autocast}") \
$(func_set_params "${batch_size_key}" "${batch_size}") \
$(func_set_params "${train_param_key1}" "${train_param_value1}")"
                run_command "${cmd}" "${log_path}"
                status_check $? "${cmd}" "${status_log}" "${model_name}" "${log_path}"

                # best_model/ exists only when training evaluated (--do_eval).
                weights="${save_log}/${train_model_name}"
                if [ ! -f "${weights}" ]; then
                    weights="${save_log}/iter_${iters}/model.pdparams"
                fi

                if [ "${eval_py}" != "null" ]; then
                    log_path="${save_log}_eval.log"
                    eval_cmd="${python} ${eval_py} $(func_set_params "${pretrain_key}" "${weights}") \
${set_device} $(func_set_params "${eval_key1}" "${eval_value1}")"
                    run_command "${eval_cmd}" "${log_path}"
                    status_check $? "${eval_cmd}" "${status_log}" "${model_name}" "${log_path}"
                fi

                if [ "${run_export}" != "null" ]; then
                    log_path="${save_log}_export.log"
                    export_cmd="${python} ${run_export} \
$(func_set_params "${export_weights_key}" "${weights}") \
$(func_set_params "${export_save_dir_key}" "${save_log}")"
                    run_command "${export_cmd}" "${log_path}"
                    status_check $? "${export_cmd}" "${status_log}" "${model_name}" "${log_path}"
                    func_inference "${save_log}${inference_dir:+/${inference_dir}}" "${train_infer_img_dir}" "${gpu}"
                fi
            done
        done
    done
fi

if [ "${TIPC_FAILURES}" -ne 0 ]; then
    echo "${TIPC_FAILURES} command(s) failed; see ${status_log}." >&2
    exit 1
fi
echo "All commands succeeded; see ${status_log}."
