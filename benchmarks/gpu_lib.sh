# Shared by the prepared GPU scripts (gpu_session.sh, gpu_reference.sh): a log with elapsed
# seconds, parts with deadlines, the machine's description, hgbench made importable without a
# network, and carried wheels. Source it after setting REPO, PYTHON, TOTAL_S, FINISH_S, START
# and WORK; it defines no main of its own.

log() { echo "[${LOG_TAG:-gpu} +$((SECONDS - START))s] $*"; }

# part NAME LIMIT_S FUNCTION: FUNCTION with a deadline of min(LIMIT_S, what the total leaves after
# the finish), which every command it starts through `limited` obeys. Its outcome goes in PARTS.
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

# the machine, and whether hgbench imports, in one interpreter start (each imports torch)
environment() {
    if command -v nvidia-smi >/dev/null; then nvidia-smi; nvidia-smi -L; fi
    limited "$PYTHON" - <<'PY'
import platform, sys
import numpy, torch, torchvision
print("python", sys.version.split()[0], platform.platform())
print("torch", torch.__version__, "torchvision", torchvision.__version__, "numpy", numpy.__version__)
print("cuda", torch.version.cuda, "available", torch.cuda.is_available(),
      torch.cuda.get_device_name() if torch.cuda.is_available() else "")
import hgbench.tasks.cifar10  # noqa: F401 (exit status 1 where hgbench is not importable)
PY
}

# wheels carried in the checkout's git-ignored .whl/ (packages the GPU image lacks, e.g. optuna
# for `tpe`): installed into $WORK/wheels, no index, no dependencies resolved
carried_wheels() {
    compgen -G "$REPO/.whl/*.whl" >/dev/null || return 0
    limited "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir \
        --target "$WORK/wheels" "$REPO"/.whl/*.whl || return 1
    export PYTHONPATH="$WORK/wheels${PYTHONPATH:+:$PYTHONPATH}"
}

# hgbench importable: already installed, else pip without network (setuptools is there), else a
# package folder of links (hgbench.methods and hgbench.tasks are the top-level methods/, tasks/).
# Python runs from $WORK, so the checkout's own hgbench/ folder never shadows the package.
make_importable() {
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

# the device in one line, for every README a GPU script writes
device_line() {
    if command -v nvidia-smi >/dev/null; then
        nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
    else
        echo "no GPU: $(uname -m), $(nproc) CPU cores"
    fi
}
