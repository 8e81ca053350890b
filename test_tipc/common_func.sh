#!/bin/bash
# Helpers shared by test_tipc/prepare.sh and test_tipc/test_train_inference_python.sh.
# A config line is `key:value`; only the first ':' separates, so values may
# contain ':'. Lists use '|', per-mode lists `MODE=value|MODE=value`, and
# `null` switches an entry off.

# Key of a `key:value` line.
function func_parser_key(){
    local line=$1
    printf '%s\n' "${line%%:*}"
}

# Value of a `key:value` line; empty for a line without ':' (section headers).
function func_parser_value(){
    local line=$1
    if [[ ${line} == *:* ]]; then
        printf '%s\n' "${line#*:}"
    fi
}

# The entry for ${MODE} of a `key:MODE=value|MODE=value` line.
function func_parser_params(){
    local entry
    local entries
    IFS='|' read -r -a entries <<< "$(func_parser_value "$1")"
    for entry in "${entries[@]}"; do
        if [[ ${entry%%=*} == "${MODE}" ]]; then
            printf '%s\n' "${entry#*=}"
            return
        fi
    done
}

# `key=value`, or nothing when the key or the value is null or empty.
function func_set_params(){
    local key=$1
    local value=$2
    if [[ -n ${key} && ${key} != null && -n ${value} && ${value} != null ]]; then
        printf '%s\n' "${key}=${value}"
    fi
}

# Run a command line, copying its output to a log file; returns its status.
function run_command(){
    local cmd=$1
    local log_path=$2
    eval "${cmd}" 2>&1 | tee "${log_path}"
    return "${PIPESTATUS[0]}"
}

# Record the outcome of a command in the results log, in PaddleSeg's format.
# Failures are counted in TIPC_FAILURES.
TIPC_FAILURES=0
function status_check(){
    local status=$1
    local cmd
    cmd=$(tr -s ' ' <<< "$2")  # drop the gaps left by unset parameters
    local results_log=$3
    local model_name=$4
    local log_path=$5
    local outcome="Run successfully"
    if [ "${status}" -ne 0 ]; then
        outcome="Run failed"
        TIPC_FAILURES=$((TIPC_FAILURES + 1))
    fi
    echo "${outcome} with command - ${model_name} - ${cmd} - ${log_path}" | tee -a "${results_log}"
}
