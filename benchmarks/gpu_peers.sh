#!/usr/bin/env bash
# The peer contests on a GPU (docs/peers.md): peers.py --device cuda over the family, CUDA-event
# timing, in one call of the device tool of at most ~4 minutes. The GPU machine has PyTorch and
# no network, so the peers (higher, torchopt, laplace-torch, BackPACK, Curvlinops and what they
# need that its image lacks) come as wheels from the git-ignored folder .wheels/:
#
#   bash benchmarks/gpu_peers.sh --fetch    # here, with PyPI: fill .wheels/ (about 2 MB), which runs
#       python -m pip download --no-deps --only-binary=:all: --implementation cp \
#           --python-version V --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
#           --platform manylinux2014_x86_64 -d .wheels $WHEELS
#       for V = 3.12 (the GPU image's python3) and this machine's Python (for --check);
#   bash benchmarks/gpu_peers.sh --check    # here: the offline install into a fresh venv imports
#   OUT=/some/dir bash benchmarks/gpu_peers.sh      # there: the run
#
# The device call: command "OUT=$OUT bash benchmarks/gpu_peers.sh", carry [".wheels"],
# timeout_s 300. Never torch, torchvision or nvidia-* wheels: the image's own torch is the one
# timed. The image already has numpy, scipy, einops, opt-einsum, tqdm, torchvision, torchmetrics,
# linear-operator, packaging and typing-extensions (the device notes' package list); ASDL is not
# on PyPI (its rows say failed: ImportError, and the Laplace contests use the backends that run).
#
# The run: records the machine (nvidia-smi, versions), installs the wheels offline into a
# folder on PYTHONPATH and hgbench without network, then peers.py --device cuda in two passes
# (unroll and IFT over the family, then Laplace) under hard limits, each pass's log written as it
# goes, so a cut keeps every finished row: $OUT/gpu_peers.log (everything), $OUT/peers_cuda.txt
# (peers.py's output, the form peers_summary.py reads) and $OUT/summary.md.
# Environment overrides: TOTAL_S (default 220), MODELS (default family), ROUNDS (default 5),
# PYTHON (default python3), DEVICE (default cuda; cpu for a smoke test here).
set -uo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$REPO" || exit 2
PYTHON="${PYTHON:-python3}"
WHEELS=(higher==0.2.1 torchopt==0.7.3 optree==0.20.0 graphviz==0.21 laplace-torch==0.5.1
    backpack-for-pytorch==1.7.1 unfoldNd==0.2.3 curvlinops-for-pytorch==3.0.1 einconv==0.1.0)
NAMES=("${WHEELS[@]%%==*}")
IMPORTS="import higher, torchopt, laplace, backpack, curvlinops, unfoldNd, einconv, optree"

fetch() {
    local here
    here="$("$PYTHON" -c 'import sys; print(f"{sys.version_info[0]}.{sys.version_info[1]}")')"
    for v in 3.12 "$here"; do
        "$PYTHON" -m pip download -q --no-deps --only-binary=:all: --implementation cp \
            --python-version "$v" --platform manylinux_2_28_x86_64 \
            --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
            -d .wheels "${WHEELS[@]}" || return 1
    done
    ls -l .wheels
}

# the wheels into $1 (a folder for PYTHONPATH, or a venv's interpreter with --venv), offline
install_into() {
    if [[ "$1" == --venv ]]; then
        "$2" -m pip install -q --no-index --no-deps --no-cache-dir --find-links .wheels "${NAMES[@]}"
    else
        "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
            --find-links .wheels --target "$1" "${NAMES[@]}"
    fi
}

# the offline install into a fresh venv (nothing installed in it; then torch reaches it by a .pth
# file, after its own site-packages), each peer imported from the venv
check() {
    [[ -d .wheels ]] || { echo "no .wheels/: run bash benchmarks/gpu_peers.sh --fetch" >&2; return 2; }
    local tmp
    tmp="$(mktemp -d)"
    "$PYTHON" -m venv "$tmp/venv" || return 1
    local site torch_site
    site="$("$tmp/venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
    torch_site="$("$PYTHON" -c 'import os, torch; print(os.path.dirname(os.path.dirname(torch.__file__)))')"
    install_into --venv "$tmp/venv/bin/python" || return 1  # before torch's folder is seen
    echo "$torch_site" >"$site/zz_torch.pth"
    "$tmp/venv/bin/python" - "$site" <<PY
import sys
$IMPORTS
site = sys.argv[1]
for m in (higher, torchopt, laplace, backpack, curvlinops, unfoldNd, einconv, optree):
    assert m.__file__.startswith(site), (m.__name__, m.__file__)
print("offline install ok:", ", ".join(sorted(m.__name__ for m in (higher, torchopt, laplace, backpack, curvlinops))))
PY
    local rc=$?
    rm -rf "$tmp"
    return $rc
}

case "${1:-run}" in
--fetch) fetch; exit $? ;;
--check) check; exit $? ;;
run) ;;
*) echo "usage: bash benchmarks/gpu_peers.sh [--fetch|--check]" >&2; exit 2 ;;
esac

: "${OUT:?set OUT to the folder for the logs}"
OUT="$(mkdir -p "$OUT" && cd "$OUT" && pwd)" || exit 2
LOG="$OUT/gpu_peers.log"
TOTAL_S="${TOTAL_S:-220}"
MODELS="${MODELS:-family}"
ROUNDS="${ROUNDS:-5}"
DEVICE="${DEVICE:-cuda}"  # cpu: a smoke test of this script without a GPU
WORK="$(mktemp -d)"
exec > >(tee -a "$LOG") 2>&1
# log, limited (SIGINT first, so Python prints its rows) and make_importable: gpu_lib.sh's, with
# one deadline for the whole run
START=$SECONDS LOG_TAG=gpu_peers PART_DEADLINE=$((SECONDS + TOTAL_S - 10))
# shellcheck source=benchmarks/gpu_lib.sh
source "$REPO/benchmarks/gpu_lib.sh"

log "machine"
if command -v nvidia-smi >/dev/null; then nvidia-smi -L; fi
[[ -d .wheels ]] || { log "no .wheels/ (carry it; bash benchmarks/gpu_peers.sh --fetch here)"; exit 2; }
install_into "$WORK/site" || { log "offline install of the peers failed"; exit 1; }
export PYTHONPATH="$WORK/site${PYTHONPATH:+:$PYTHONPATH}"
cd "$WORK" || exit 2  # Python from here: the checkout's own hgbench/ folder shadows nothing
make_importable || log "hgbench did not import after pip install -e nor through links"
"$PYTHON" - <<PY || { log "the peers or hgbench do not import"; exit 1; }
import sys, torch
$IMPORTS
import hgbench
print("python", sys.version.split()[0], "torch", torch.__version__, "cuda", torch.version.cuda,
      torch.cuda.get_device_name() if torch.cuda.is_available() else "no GPU")
PY

RAW="$OUT/peers_cuda.txt"
export PYTHONUNBUFFERED=1
{ date; uptime || cat /proc/loadavg; } >"$RAW"
log "pass 1: unroll, ift over $MODELS"
limited "$PYTHON" "$REPO/benchmarks/peers.py" --device "$DEVICE" --models "$MODELS" --parts unroll,ift \
    --rounds "$ROUNDS" | tee -a "$RAW"
log "pass 1 ended with status ${PIPESTATUS[0]}"
log "pass 2: laplace over $MODELS"
limited "$PYTHON" "$REPO/benchmarks/peers.py" --device "$DEVICE" --models "$MODELS" --parts laplace \
    --rounds "$ROUNDS" | tee -a "$RAW"
log "pass 2 ended with status ${PIPESTATUS[0]}"
{ date; uptime || cat /proc/loadavg; } >>"$RAW"
"$PYTHON" "$REPO/benchmarks/peers_summary.py" "$RAW" --out "$OUT/summary.md" || log "no summary"
log "done"
sleep 1  # tee (the log) drains before the call returns
