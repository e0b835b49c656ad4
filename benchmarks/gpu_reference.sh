#!/usr/bin/env bash
# The prepared GPU run of the CIFAR-10 grid: a thin wrapper over hgbench's time-budgeted plan.
#
#   OUT=/some/dir bash benchmarks/gpu_reference.sh [PACK_DIR]
#
# PACK_DIR (default .cifar, git-ignored) holds either cifar10_slice.npz, a slice of the CIFAR-10
# JPEG pack made by benchmarks/cifar_slice_pack.py (every test image and the training images its
# tasks draw for its seeds; those tasks and seeds are then the plan's), or the whole shared pack,
# cifar10_jpeg_q75.npz with its unpack.py (all 60,000 images, JPEG q75, exact labels and order;
# 53 MiB, more than a device run carries beside the tree). The script
#   setup   records the machine (nvidia-smi, versions), makes hgbench importable without network
#           and unpacks the pack (CIFAR-10's python layout) into a temporary directory;
#   plan    runs, on --device cuda, what fits of
#               python -m hgbench run --suite cifar10 --time-budget-s T --pack P --cost-pass
#           with T the seconds the total leaves: each configuration alone first (the cost pass,
#           DIR/cost/: the cost axes of packed rows), then the suite's cells seed-major, by its
#           priority, P at once, each started only while its estimate fits (docs/gpu.md);
#   finish  writes the report into the report folder (results.jsonl, cost/, report.md, figures,
#           README.md with this run's record appended: the data, the device, the command, the
#           plan's own lines) and packs it into $OUT/cifar10_gpu.tar.gz; the whole log is
#           $OUT/gpu_reference.log.
# The plan runs under a hard limit too (SIGINT, then SIGKILL), so the report is always written:
# a cut keeps every finished cell, and rerunning into the same folder continues the grid. The
# store grows across GPU runs: on a GPU the report folder is a copy of the checkout's
# reports/cifar10_gpu/ (HGBENCH_GPU_GROW), resumed, so the archive is that folder grown by this
# run and replaces it (docs/cifar10.md). A HGBENCH_GPU_REPORT folder that already holds rows is
# refused unless HGBENCH_GPU_RESUME=1.
#
# HGBENCH_GPU_SMOKE=1 runs the same script on the CPU in about a minute (one task, two methods,
# one epoch, 1,000 training images unpacked) so that tests/test_cifar10_real.py keeps it working
# without a GPU. Environment overrides: TOTAL_S, PACK, SEEDS, TASKS, METHODS, EPOCHS,
# CELL_TIMEOUT_S, HGBENCH_GPU_REPORT (the report folder), HGBENCH_GPU_RESUME, HGBENCH_GPU_GROW (a
# report folder to copy and grow; empty: a fresh one), PYTHON.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PACK_DIR="$(cd "${1:-.cifar}" 2>/dev/null && pwd)" || { echo "no pack folder ${1:-.cifar}" >&2; exit 2; }
: "${OUT:?set OUT to the folder for the archive and the log}"
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)" || exit 2
LOG="$OUT/gpu_reference.log"
SMOKE="${HGBENCH_GPU_SMOKE:-0}"
GROW=""
if [[ -n "${HGBENCH_GPU_REPORT:-}" ]]; then
    REPORT="$(realpath -m "$HGBENCH_GPU_REPORT")"
    if [[ "${HGBENCH_GPU_RESUME:-0}" != 1 && ( -s "$REPORT/results.jsonl" || -s "$REPORT/results.jsonl.gz" ) ]]; then
        echo "$REPORT already holds results: give HGBENCH_GPU_REPORT a new folder, or set HGBENCH_GPU_RESUME=1 to grow it" >&2
        exit 2
    fi
else
    # on a GPU the run grows the reference store: a copy of it, resumed (cells already there are
    # skipped; the digest of a cell's key covers the task's settings, so an earlier slice's rows
    # at other epochs are other cells, which the report keeps apart)
    [[ "$SMOKE" == 1 ]] && GROW_DEFAULT="" || GROW_DEFAULT="$REPO/reports/cifar10_gpu"
    GROW="${HGBENCH_GPU_GROW-$GROW_DEFAULT}"
    REPORT="$(mktemp -d)/cifar10_gpu"
    if [[ -n "$GROW" ]]; then
        [[ -d "$GROW" ]] || { echo "no report folder $GROW to grow" >&2; exit 2; }
        cp -r "$GROW" "$REPORT" || exit 2
        rm -f "$REPORT/.hgbench.lock"
    fi
fi
ROWS_BEFORE=$(cat "$REPORT/results.jsonl" 2>/dev/null | wc -l)
PYTHON="${PYTHON:-python3}"
LABEL="CIFAR-10 (JPEG q75 copy)"
SELECT=()  # --tasks/--methods/--seeds/--set narrowing the suite (none: the whole suite)
UNPACK=()
if [[ "$SMOKE" == 1 ]]; then
    DEVICE=cpu
    TOTAL_S="${TOTAL_S:-240}"  # a ceiling: the smoke ends when its four cells are done
    UNPACK=(--train-per-class 100)  # the 1k task's images only: decoding all takes a minute here
    PACK="${PACK:-1}"
    CELL_TIMEOUT_S="${CELL_TIMEOUT_S:-60}"
    SELECT=(--tasks "${TASKS:-cifar10_1k_flipcrop}" --methods "${METHODS:-fixed,laplace_ntk}"
        --seeds "${SEEDS:-0}" --set "task.epochs=${EPOCHS:-1}" --set task.n_test=200
        --set task.eval_test_subset=100 --set laplace_ntk.burnin=0 --set laplace_ntk.block_size=50
        --set laplace_ntk.hypersteps=2 --cost-epochs 1)
else
    DEVICE=cuda
    TOTAL_S="${TOTAL_S:-510}"  # within a 540 s device call (9 minutes), set-up and report included
    PACK="${PACK:-4}"  # until benchmarks/gpu_session.sh's packing table says otherwise
    CELL_TIMEOUT_S="${CELL_TIMEOUT_S:-240}"
    [[ -n "${TASKS:-}" ]] && SELECT+=(--tasks "$TASKS")
    [[ -n "${METHODS:-}" ]] && SELECT+=(--methods "$METHODS")
    [[ -n "${SEEDS:-}" ]] && SELECT+=(--seeds "$SEEDS")
    [[ -n "${EPOCHS:-}" ]] && SELECT+=(--set "task.epochs=$EPOCHS")
fi
FINISH_S=45  # kept back for the report and the archive
START=$SECONDS
PARTS=()  # "name: outcome (seconds)" for the README
PLAN_CMD=""

LOG_TAG=gpu_reference
# log, part, limited, environment, make_importable, carried_wheels: shared with gpu_session.sh
# shellcheck source=benchmarks/gpu_lib.sh
source "$REPO/benchmarks/gpu_lib.sh"

setup() {
    log "data: $LABEL from $PACK_DIR; report: $REPORT; smoke: $SMOKE"
    carried_wheels || log "the carried wheels did not install"
    environment || make_importable || return 1
    # the python layout: six files, decoded once (~5 s), instead of 60,000 image files
    if [[ -f "$PACK_DIR/cifar10_slice.npz" ]]; then
        limited "$PYTHON" "$REPO/benchmarks/cifar_slice_pack.py" unpack \
            "$PACK_DIR/cifar10_slice.npz" "$WORK/cifar10"
    else
        limited "$PYTHON" "$PACK_DIR/unpack.py" "$WORK/cifar10" --layout cifar-python "${UNPACK[@]}"
    fi
}

plan() {
    # the plan's budget: what the part leaves, less a margin for the cell in flight at its end
    local budget=$((PART_DEADLINE - SECONDS - 15))
    ((budget < 5)) && budget=5
    # a slice of the pack holds the training images of its tasks and seeds only: plan those
    local info="$WORK/cifar10/slice.txt"
    if [[ "$SMOKE" != 1 && -f "$info" ]]; then
        [[ -z "${TASKS:-}" ]] && SELECT+=(--tasks "$(sed -n 's/^tasks=//p' "$info")")
        [[ -z "${SEEDS:-}" ]] && SELECT+=(--seeds "$(sed -n 's/^seeds=//p' "$info")")
    fi
    local cmd=("$PYTHON" -m hgbench run --suite cifar10 --device "$DEVICE" --time-budget-s "$budget"
        --pack "$PACK" --cost-pass "${SELECT[@]}" --timeout-s "$CELL_TIMEOUT_S"
        --data-dir "$WORK/cifar10" --out "$REPORT" --no-report)
    PLAN_CMD="python -m hgbench ${cmd[*]:3}"
    limited "${cmd[@]}"
}

finish() {
    trap - EXIT INT TERM
    log "finish: report and archive"
    mkdir -p "$REPORT"
    rm -f "$REPORT/.hgbench.lock"
    if [[ -s "$REPORT/results.jsonl" ]]; then
        timeout 60 "$PYTHON" -m hgbench report "$REPORT" || log "the report writer failed"
        # the data's label in the report's title (the report writer has no title option)
        if [[ -f "$REPORT/report.md" ]]; then
            sed -i "1s|^# hgbench report\$|# hgbench report: $LABEL|" "$REPORT/report.md"
        fi
    fi
    # this run's record, appended to the folder's README.md (a grown store keeps every run's)
    [[ -s "$REPORT/README.md" ]] || echo "# CIFAR-10 on one GPU: the reference grid, slice by slice" >"$REPORT/README.md"
    {
        echo
        echo "## Run of $(date -u +%Y-%m-%dT%H:%M:%SZ): a time-budgeted slice of the grid"
        echo
        echo "Data: **$LABEL**: CIFAR-10's images in their original order with exact"
        echo "labels, JPEG-compressed at quality 75 (about 30 dB PSNR against the originals), so"
        echo "accuracies can differ slightly from published CIFAR-10 numbers; comparisons between"
        echo "methods on it are fair. Pack: \`$(basename "$(ls "$PACK_DIR"/cifar10_slice.npz "$PACK_DIR"/cifar10_jpeg_q75.npz 2>/dev/null | head -1)")\`."
        echo
        echo "Command: \`OUT=... bash benchmarks/gpu_reference.sh $ARGS\` (smoke: $SMOKE), run"
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ), which ran \`${PLAN_CMD//$WORK/\$WORK}\`."
        echo "Store: ${GROW:+a copy of \`${GROW#"$REPO"/}\`, grown: }$ROWS_BEFORE rows before this run,"
        echo "$(cat "$REPORT/results.jsonl" 2>/dev/null | wc -l) after. Wall time $((SECONDS - START)) s. Parts:"
        echo
        local p
        for p in "${PARTS[@]}"; do echo "- $p"; done
        echo
        echo "The plan (its own words):"
        echo
        echo '```'
        grep -E "^(plan for|cost pass|time budget spent|resuming|finished in)" "$LOG" || true
        echo '```'
        echo
        echo "Device:"
        echo
        echo '```'
        if command -v nvidia-smi >/dev/null; then
            nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv
        else
            echo "no GPU: $(uname -m), $(nproc) CPU cores"
        fi
        echo '```'
        echo
        echo "\`report.md\` holds the tables and figures, \`results.jsonl\` every row, \`cost/\`"
        echo "the isolated cost pass whose cost axes the packed rows take."
    } >>"$REPORT/README.md"
    tar -czf "$OUT/cifar10_gpu.tar.gz" -C "$(dirname "$REPORT")" "$(basename "$REPORT")"
    log "packed $OUT/cifar10_gpu.tar.gz ($(du -h "$OUT/cifar10_gpu.tar.gz" | cut -f1)), total $((SECONDS - START))s"
    cd / && rm -rf "$WORK"
}

main() {
    WORK="$(mktemp -d)"
    cd "$WORK" || return 2
    trap finish EXIT
    trap 'exit 130' INT TERM
    part setup 150 setup
    if [[ ! -d "$WORK/cifar10/cifar-10-batches-py" ]]; then
        log "setup failed: no data, so no plan"
        return 1
    fi
    part plan "$TOTAL_S" plan
    return 0
}

ARGS="$*"
main "$@" 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
