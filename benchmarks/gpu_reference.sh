#!/usr/bin/env bash
# The prepared GPU run: a reference slice of the CIFAR-10 grid on one GPU, within 9 minutes.
#
#   OUT=/some/dir bash benchmarks/gpu_reference.sh [PACK_DIR]
#
# PACK_DIR (default .cifar, git-ignored) holds cifar10_jpeg_q75.npz and its unpack.py (the shared
# CIFAR-10 JPEG pack: all 60,000 images, JPEG q75, exact labels and order). The script
#   part 1  records the machine (nvidia-smi, versions), makes hgbench importable without network
#           and unpacks the pack into image folders in a temporary directory;
#   part 2  runs the reference slice on --device cuda: fixed, ift_neumann, unroll, laplace_ntk,
#           laplace_full (its fits every 5 epochs, as the authors' CIFAR runs) × 3 seeds on
#           CIFAR-10 1k × none/flipcrop/learned_affine (20 epochs) and 10k × none (8 epochs), one
#           hgbench process per subset (their epochs differ), cells seed by seed: 60 cells in
#           about 270 s. Sizing, measured on an H200 (2026-11): a ResNet-8 step on 128 images
#           takes about 5 ms there (launch- and host-bound, the bare loop too), one seed of this
#           slice 72 s of cells plus 23 s of process start-ups; 10k × flipcrop/learned_affine
#           and longer schedules do not fit beside a second part (SEEDS, EPOCHS_1K, EPOCHS_10K,
#           TASKS_10K widen it where there is time);
#   part 3  benchmarks/cifar_bare_loop.py: `fixed` through the runner against a bare loop;
#   part 4  papers (only with time left): the CIFAR-scale claims of the paper reproductions
#           (reports/papers/): suite augnet-gpu (Lorraine et al. 2020: the augmentation network
#           against none, cifar10_10k) and ntk-vs-full-gpu (Immer et al. 2023: the NTK block
#           bound against full-batch Laplace, cifar10_5k), PAPERS_BUDGET_S timed seconds a cell
#           (equal time: the claim), seeds PAPERS_SEEDS, into $REPORT/papers/<suite>/ (packed with
#           the rest; `python benchmarks/papers.py lorraine2020 --report-only` then reads them);
#   (room for further parts: a function run by `part NAME SECONDS FUNCTION` in `main`)
#   finish  writes the report into reports/cifar10_gpu/ (results.jsonl, report.md, figures, and
#           README.md naming the data, the device and the command), then packs that folder into
#           $OUT/cifar10_gpu.tar.gz; the whole log is $OUT/gpu_reference.log.
# Every part runs under its own time limit and the total under TOTAL_S, so the report is always
# written and packed: a part cut short keeps every finished cell (results.jsonl is appended as
# cells finish, and a rerun into the same folder resumes).
#
# HGBENCH_GPU_SMOKE=1 runs the same script on the CPU in a minute or two (one seed, a couple of
# cells, one epoch) so that tests/test_cifar10_real.py keeps it working without a GPU.
# Environment overrides: TOTAL_S, SEEDS, EPOCHS_1K, EPOCHS_10K, TASKS_10K, CELL_TIMEOUT_S, GRID_S,
# BARE_S, PAPERS_S, PAPERS_SEEDS, PAPERS_BUDGET_S, HGBENCH_GPU_REPORT (the report folder), PYTHON.
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PACK_DIR="$(cd "${1:-.cifar}" 2>/dev/null && pwd)" || { echo "no pack folder ${1:-.cifar}" >&2; exit 2; }
: "${OUT:?set OUT to the folder for the archive and the log}"
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)" || exit 2
LOG="$OUT/gpu_reference.log"
# A fresh folder by default: the committed reports/cifar10_gpu/ holds an earlier run's rows, and
# running into it would resume from them (other epochs, other seeds) and mix the two runs. Unpack
# the archive over reports/cifar10_gpu/ afterwards. A folder that already holds rows is refused.
REPORT="$(realpath -m "${HGBENCH_GPU_REPORT:-$(mktemp -d)/cifar10_gpu}")"
if [[ -s "$REPORT/results.jsonl" || -s "$REPORT/results.jsonl.gz" ]]; then
    echo "$REPORT already holds results: give HGBENCH_GPU_REPORT a new folder" >&2
    exit 2
fi
PYTHON="${PYTHON:-python3}"
LABEL="CIFAR-10 (JPEG q75 copy)"
SMOKE="${HGBENCH_GPU_SMOKE:-0}"

if [[ "$SMOKE" == 1 ]]; then
    DEVICE=cpu
    SEEDS="${SEEDS:-0}"
    TASKS_1K="cifar10_1k_flipcrop"
    TASKS_10K=""
    METHODS="fixed,laplace_ntk"
    EPOCHS_1K="${EPOCHS_1K:-1}"
    EXTRA_SETS=(--set task.n_test=200 --set task.eval_test_subset=100 --threads 2)
    BARE_ARGS=(--device cpu --epochs 1 --rounds 1)
    BARE_S="${BARE_S:-150}"
    TOTAL_S="${TOTAL_S:-600}"
    CELL_TIMEOUT_S="${CELL_TIMEOUT_S:-120}"
    PAPERS_BUDGET_S="${PAPERS_BUDGET_S:-2}"
    # 200 labelled images, blocks of 50: the papers part's cells in seconds on a CPU
    PAPERS_SETS=(--set task.n_labelled=200 --set task.n_test=200 --set task.eval_test_subset=100
        --set laplace_ntk.block_size=50 --set laplace_ntk.burnin=0 --set laplace_full.burnin=0
        --threads 2)
else
    DEVICE=cuda
    SEEDS="${SEEDS:-0,1,2}"
    TASKS_1K="cifar10_1k_none,cifar10_1k_flipcrop,cifar10_1k_learned_affine"
    TASKS_10K="${TASKS_10K:-cifar10_10k_none}"
    METHODS="fixed,ift_neumann,unroll,laplace_ntk,laplace_full"
    EPOCHS_1K="${EPOCHS_1K:-20}"
    EXTRA_SETS=()
    BARE_ARGS=(--device cuda --epochs 40 --rounds 5)
    TOTAL_S="${TOTAL_S:-540}"  # 9 minutes, all parts and the report included
    CELL_TIMEOUT_S="${CELL_TIMEOUT_S:-60}"
    PAPERS_BUDGET_S="${PAPERS_BUDGET_S:-20}"
    PAPERS_SETS=()
fi
PAPERS_S="${PAPERS_S:-600}"  # part 4 takes what the total leaves, at most this
PAPERS_SEEDS="${PAPERS_SEEDS:-0}"
EPOCHS_10K="${EPOCHS_10K:-8}"
GRID_S="${GRID_S:-310}"  # part 2's share
BARE_S="${BARE_S:-45}"  # part 3's share
FINISH_S=45  # kept back for the report and the archive
START=$SECONDS
PARTS=()  # "name: outcome (seconds)" for the README

log() { echo "[gpu_reference +$((SECONDS - START))s] $*"; }

# part NAME LIMIT_S FUNCTION: run FUNCTION with a deadline of min(LIMIT_S, what the total leaves
# after the finish) seconds, which every command it starts through `limited` obeys.
part() {
    local name="$1" limit="$2"
    shift 2
    local left=$((TOTAL_S - FINISH_S - (SECONDS - START)))
    ((limit > left)) && limit=$left
    if ((limit < 5)); then
        log "part $name skipped: no time left"
        PARTS+=("$name: skipped, no time left")
        return 0
    fi
    log "part $name: up to ${limit}s"
    local t0=$SECONDS rc=0
    PART_DEADLINE=$((SECONDS + limit))
    "$@" || rc=$?
    local outcome="ok"
    ((rc == 124 || rc == 130 || rc == 137)) && outcome="cut at its time limit"
    ((rc != 0 && rc != 124 && rc != 130 && rc != 137)) && outcome="failed (exit $rc)"
    log "part $name: $outcome after $((SECONDS - t0))s"
    PARTS+=("$name: $outcome ($((SECONDS - t0)) s)")
    return 0
}

# limited COMMAND...: COMMAND until the part's deadline; SIGINT first (hgbench then keeps its
# finished cells and exits with 130), SIGKILL 20 s later.
limited() {
    local left=$((PART_DEADLINE - SECONDS))
    ((left < 1)) && return 124
    timeout --signal=INT --kill-after=20 "$left" "$@"
}

environment() {
    log "data: $LABEL from $PACK_DIR; report: $REPORT; smoke: $SMOKE"
    if command -v nvidia-smi >/dev/null; then nvidia-smi; nvidia-smi -L; fi
    limited "$PYTHON" - <<'PY'
import platform, sys
import numpy, torch, torchvision
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__)
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
PY
}

# hgbench importable: already installed, else pip without network (setuptools is there), else a
# package folder of links (hgbench.methods and hgbench.tasks are the top-level methods/, tasks/).
# Python runs from $WORK, so the checkout's own hgbench/ folder never shadows the package.
make_importable() {
    limited "$PYTHON" -c "import hgbench.tasks.cifar10" 2>/dev/null && return 0
    if limited "$PYTHON" -m pip install --no-deps --no-build-isolation --no-index -q -e "$REPO"; then
        limited "$PYTHON" -c "import hgbench.tasks.cifar10" && return 0
    fi
    log "pip install failed: importing hgbench through a folder of links instead"
    local site="$WORK/site"
    mkdir -p "$site/hgbench"
    ln -sf "$REPO"/hgbench/* "$site/hgbench/"
    ln -sfn "$REPO/methods" "$site/hgbench/methods"
    ln -sfn "$REPO/tasks" "$site/hgbench/tasks"
    export PYTHONPATH="$site${PYTHONPATH:+:$PYTHONPATH}"
    limited "$PYTHON" -c "import hgbench.tasks.cifar10"
}

setup() {
    environment
    make_importable || return 1
    limited "$PYTHON" "$PACK_DIR/unpack.py" "$WORK/cifar10"
}

# the grid: one process per subset (their epochs differ), 1k first; inside one, hgbench runs
# the cells seed by seed, so that a cut leaves whole seeds behind
grid() {
    run_subset "$TASKS_1K" "$EPOCHS_1K" || return $?
    if [[ -n "$TASKS_10K" ]]; then run_subset "$TASKS_10K" "$EPOCHS_10K" || return $?; fi
    return 0
}

run_subset() {
    local tasks="$1" epochs="$2" rc=0
    limited "$PYTHON" -m hgbench run --suite cifar10 --tasks "$tasks" --methods "$METHODS" \
        --seeds "$SEEDS" --device "$DEVICE" --set "task.epochs=$epochs" \
        --set laplace_full.frequency=5 "${EXTRA_SETS[@]}" \
        --timeout-s "$CELL_TIMEOUT_S" --data-dir "$WORK/cifar10" --out "$REPORT" --no-report || rc=$?
    # cut at the deadline: stop the part; any other failure (a failed cell is a row, not an
    # exit status) is logged and the next subset runs
    ((rc == 124 || rc == 130 || rc == 137)) && return "$rc"
    return 0
}

bare_loop() {
    local rc=0
    limited "$PYTHON" "$REPO/benchmarks/cifar_bare_loop.py" --task cifar10_1k_flipcrop \
        --data-dir "$WORK/cifar10" "${BARE_ARGS[@]}" >"$WORK/bare_loop.txt" 2>&1 || rc=$?
    cat "$WORK/bare_loop.txt"
    return "$rc"
}

# part 4: the papers' CIFAR-scale claims at equal timed seconds per cell, one folder per suite
# (the grid's report stays the grid's); the NTK comparison first, as it is the smaller
papers_gpu() {
    local suite rc=0
    for suite in ntk-vs-full-gpu augnet-gpu; do
        rc=0
        limited "$PYTHON" -m hgbench run --suite "$suite" --seeds "$PAPERS_SEEDS" \
            --device "$DEVICE" --budget-s "$PAPERS_BUDGET_S" "${PAPERS_SETS[@]}" \
            --timeout-s "$CELL_TIMEOUT_S" --data-dir "$WORK/cifar10" \
            --out "$REPORT/papers/$suite" --no-report || rc=$?
        rm -f "$REPORT/papers/$suite/.hgbench.lock"
        ((rc == 124 || rc == 130 || rc == 137)) && return "$rc"
    done
    return 0
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
    {
        echo "# CIFAR-10 on one GPU: the reference slice"
        echo
        echo "Data: **$LABEL**: all 60,000 CIFAR-10 images in their original order with exact"
        echo "labels, JPEG-compressed at quality 75 (about 30 dB PSNR against the originals), so"
        echo "accuracies can differ slightly from published CIFAR-10 numbers; comparisons between"
        echo "methods on it are fair."
        echo
        echo "Command: \`OUT=... bash benchmarks/gpu_reference.sh $ARGS\` (smoke: $SMOKE), run"
        echo "$(date -u +%Y-%m-%dT%H:%M:%SZ). Grid: tasks $TASKS_1K ($EPOCHS_1K epochs)"
        if [[ -n "$TASKS_10K" ]]; then echo "and $TASKS_10K ($EPOCHS_10K epochs)"; fi
        echo "× methods $METHODS × seeds $SEEDS on $DEVICE; per-cell limit $CELL_TIMEOUT_S s."
        echo "Wall time $((SECONDS - START)) s. Parts:"
        echo
        local p
        for p in "${PARTS[@]}"; do echo "- $p"; done
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
        if [[ -s "$WORK/bare_loop.txt" ]]; then
            echo
            echo "\`fixed\` through the runner against a bare loop (benchmarks/cifar_bare_loop.py):"
            echo
            echo '```'
            cat "$WORK/bare_loop.txt"
            echo '```'
        fi
        echo
        echo "\`report.md\` holds the tables and figures, \`results.jsonl\` every row."
    } >"$REPORT/README.md"
    tar -czf "$OUT/cifar10_gpu.tar.gz" -C "$(dirname "$REPORT")" "$(basename "$REPORT")"
    log "packed $OUT/cifar10_gpu.tar.gz ($(du -h "$OUT/cifar10_gpu.tar.gz" | cut -f1)), total $((SECONDS - START))s"
    # 60,000 unpacked files take long to delete; a GPU machine is handed back whole anyway
    if [[ "$SMOKE" == 1 ]]; then cd / && rm -rf "$WORK"; fi
}

main() {
    WORK="$(mktemp -d)"
    cd "$WORK" || return 2
    trap finish EXIT
    trap 'exit 130' INT TERM
    part setup 150 setup
    if [[ ! -d "$WORK/cifar10/train" ]]; then
        log "setup failed: no data, so no grid"
        return 1
    fi
    part grid "$GRID_S" grid
    part bare_loop "$BARE_S" bare_loop
    part papers "$PAPERS_S" papers_gpu
    # further parts go here, each a function run by: part NAME SECONDS FUNCTION
    return 0
}

ARGS="$*"
main "$@" 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
