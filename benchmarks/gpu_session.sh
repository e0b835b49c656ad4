#!/usr/bin/env bash
# The prepared GPU measurement session (issue 21's figures), one call of at most 9 minutes:
#
#   OUT=/some/dir bash benchmarks/gpu_session.sh [PACK_DIR]
#
# PACK_DIR (default .cifar, git-ignored) holds a slice of the shared CIFAR-10 JPEG pack with the
# images the CIFAR cells use (the whole 56 MB pack and the checkout do not fit the 64 MiB a lent
# machine takes; benchmarks/cifar_slice_pack.py), the same slice as gpu_reference.sh's, made by
#   python benchmarks/cifar_slice_pack.py make ../shared/data/cifar10-jpeg/cifar10_jpeg_q75.npz \
#       .cifar --tasks 'cifar10_1k_*,lila_cifar10_*_1k_*' --seeds 0,1,2
# (11.5 MiB), or the whole pack (cifar10_jpeg_q75.npz and its unpack.py) where size allows.
# Packages the GPU image lacks may be carried as wheels in .whl/ (git-ignored). Parts, each
# under its own deadline inside TOTAL_S:
#   setup    the machine (nvidia-smi, versions), hgbench importable without network, the pack
#            unpacked into CIFAR-10's python layout in a temporary folder;
#   graphs   CUDA graphs against eager per task (benchmarks/gpu_graphs.py): kept only where
#            bit-identical, with seconds per step each way;
#   tests    the GPU-only tests (`python -m pytest -m gpu`: reversal bit-exact on the device, the
#            calibration step, the allocator's peak memory, augmentation on the device);
#   packing  the same cell (cifar10_1k_none, `fixed`, seed 0, 100 epochs) at packing 1, 2, 4,
#            8, 12 and once at 4 under MPS (benchmarks/gpu_packing.py): aggregate images/s, each
#            cell's slowdown, cells per minute, the chosen packing;
#   finish   $OUT/gpu_session/ (README.md naming the device, graphs.md, packing.md, pytest.log,
#            the JSON and the packing runs' rows) packed into $OUT/gpu_session.tar.gz.
# HGBENCH_GPU_SMOKE=1 runs the same parts on the CPU in a few minutes (digits tasks, packing 1
# and 2, no CIFAR-10), so tests/test_gpu_session.py keeps the script working without a GPU.
# Overrides: TOTAL_S, LEVELS, EPOCHS, TASK, MPS_LEVEL, PYTHON, DEVICE (a CPU trial of the real path).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
: "${OUT:?set OUT to the folder for the archive and the log}"
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)" || exit 2
PYTHON="${PYTHON:-python3}"
SMOKE="${HGBENCH_GPU_SMOKE:-0}"
LOG="$OUT/gpu_session.log"
DEST="$OUT/gpu_session"
if [[ "$SMOKE" == 1 ]]; then
    DEVICE=cpu TOTAL_S="${TOTAL_S:-400}" LEVELS="${LEVELS:-1,2}" EPOCHS="${EPOCHS:-2}"
    TASK="${TASK:-digits_mlp}" GRAPH_TASKS=digits_mlp MPS_LEVEL="${MPS_LEVEL:-}"
    PACK_DIR=""
else
    DEVICE="${DEVICE:-cuda}" TOTAL_S="${TOTAL_S:-510}" LEVELS="${LEVELS:-1,2,4,8,12}" EPOCHS="${EPOCHS:-100}"
    TASK="${TASK:-cifar10_1k_none}" MPS_LEVEL="${MPS_LEVEL:-4}"
    GRAPH_TASKS=cifar10_1k_none,cifar10_1k_flipcrop,digits_mlp,digits_cnn
    PACK_DIR="$(cd "${1:-.cifar}" 2>/dev/null && pwd)" || { echo "no pack folder ${1:-.cifar}" >&2; exit 2; }
fi
FINISH_S=20
START=$SECONDS
PARTS=()
LOG_TAG=gpu_session
# shellcheck source=benchmarks/gpu_lib.sh
source "$REPO/benchmarks/gpu_lib.sh"

setup() {
    log "device $DEVICE, smoke $SMOKE, pack ${PACK_DIR:-none}"
    carried_wheels || log "the carried wheels did not install"
    environment || make_importable || return 1
    [[ -z "$PACK_DIR" ]] && return 0
    if [[ -f "$PACK_DIR/cifar10_slice.npz" ]]; then
        limited "$PYTHON" "$REPO/benchmarks/cifar_slice_pack.py" unpack \
            "$PACK_DIR/cifar10_slice.npz" "$WORK/cifar10"
    else
        limited "$PYTHON" "$PACK_DIR/unpack.py" "$WORK/cifar10" --layout cifar-python
    fi
}

data_args() { [[ -n "$PACK_DIR" ]] && echo --data-dir "$WORK/cifar10"; }

graphs() {
    # shellcheck disable=SC2046
    limited "$PYTHON" "$REPO/benchmarks/gpu_graphs.py" --device "$DEVICE" --tasks "$GRAPH_TASKS" \
        $(data_args) --out "$DEST"
}

gpu_tests() {
    # every test module with a gpu mark; from $WORK, so the checkout's hgbench/ shadows nothing
    local files
    mapfile -t files < <(grep -l "mark.gpu" "$REPO"/tests/test_*.py)
    limited "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider --continue-on-collection-errors \
        --rootdir "$REPO" "${files[@]}" >"$DEST/pytest.log" 2>&1
    local rc=$?
    tail -n 15 "$DEST/pytest.log"
    ((rc == 5)) && return 0  # nothing collected ran (no CUDA): every test skipped
    return $rc
}

packing() {
    local mps=()
    [[ -n "$MPS_LEVEL" ]] && mps=(--mps-level "$MPS_LEVEL")
    # shellcheck disable=SC2046
    limited "$PYTHON" "$REPO/benchmarks/gpu_packing.py" --device "$DEVICE" --levels "$LEVELS" \
        --task "$TASK" --epochs "$EPOCHS" "${mps[@]}" $(data_args) \
        --out "$DEST/packing_runs"
    [[ -f "$DEST/packing_runs/packing.md" ]] && cp "$DEST/packing_runs/packing.md" "$DEST/"
}

finish() {
    trap - EXIT INT TERM
    log "finish: README and archive"
    mkdir -p "$DEST"
    {
        echo "# The GPU measurement session (benchmarks/gpu_session.sh)"
        echo
        echo "Device: $(device_line). Run $(date -u +%Y-%m-%dT%H:%M:%SZ), commit"
        echo "$(git -C "$REPO" rev-parse --short HEAD 2>/dev/null || echo unknown), smoke $SMOKE,"
        echo "wall time $((SECONDS - START)) s. Parts:"
        echo
        local p
        for p in "${PARTS[@]}"; do echo "- $p"; done
        echo
        echo "GPU-only tests (\`python -m pytest -m gpu\`): $(tail -n 1 "$DEST/pytest.log" 2>/dev/null)"
        echo
        for f in graphs.md packing.md; do
            [[ -f "$DEST/$f" ]] && { sed 's/^# /## /' "$DEST/$f"; echo; }
        done
    } >"$DEST/README.md"
    rm -rf "$DEST"/packing_runs/*/.hgbench.lock
    tar -czf "$OUT/gpu_session.tar.gz" -C "$OUT" gpu_session
    log "packed $OUT/gpu_session.tar.gz, total $((SECONDS - START))s"
    cd / && rm -rf "$WORK"
}

main() {
    WORK="$(mktemp -d)"
    mkdir -p "$DEST"
    cd "$WORK" || return 2
    trap finish EXIT
    trap 'exit 130' INT TERM
    part setup 150 setup
    part graphs 60 graphs
    part tests 150 gpu_tests
    part packing "$TOTAL_S" packing
    return 0
}

main "$@" 2>&1 | tee "$LOG"
exit "${PIPESTATUS[0]}"
