#!/usr/bin/env bash
# The prepared GPU check (issue #17): on a machine with CUDA GPUs and a checkout of this
# repository, install and run everything gandist has not yet run on a GPU, in under 8 minutes:
# `pytest -m gpu`, the GPU benchmark table and a 2-minute DCGAN-64 training run. Writes
# gpu_check.json and gpu_check.md (plus logs) to the output directory. See
# benchmarks/gpu_check.py for the parts and docs/performance.md for how to read them.
#
#   scripts/gpu_check.sh [--dry-run] [--out DIR] [--budget SECONDS] [--no-install]
#   make gpu-check [ARGS="--dry-run --out DIR"]
#
# --out       default: $OUT when set, else ./gpu-check
# --budget    seconds for the whole check, install included (default 465; dry run 100)
# --dry-run   the same code on CPU with tiny sizes, in well under a minute (the test suite runs
#             it); the install step only prints what `make install` would do
# --no-install  use the Python found (PYTHON, else .venv/bin/python, else python3) as it is
#
# Exit status 0 when every part passed; the JSON says which part failed and why. Each part has
# its own time limit, and a failing part does not stop the ones after it.
set -uo pipefail

started=$(date +%s)
repo=$(cd "$(dirname "$0")/.." && pwd)
out="${OUT:-gpu-check}"
dry=0
install=1
budget=0
while [ $# -gt 0 ]; do
  case "$1" in
    --dry-run) dry=1 ;;
    --no-install) install=0 ;;
    --out) out="$2"; shift ;;
    --out=*) out="${1#--out=}" ;;
    --budget) budget="$2"; shift ;;
    --budget=*) budget="${1#--budget=}" ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    *) echo "gpu_check.sh: unknown argument $1" >&2; exit 2 ;;
  esac
  shift
done
mkdir -p "$out"
out=$(cd "$out" && pwd)
cd "$repo" || exit 2

# 1. install (a venv with the package and its test dependencies, `make install`)
t0=$(date +%s)
if [ "$dry" = 1 ]; then
  make -n install >"$out/install.log" 2>&1
  install_status="dry-run"
elif [ "$install" = 1 ]; then
  if timeout 300 make install >"$out/install.log" 2>&1; then
    install_status="ok"
  else
    install_status="failed"
    echo "gpu_check.sh: make install failed (see $out/install.log); trying the Python found" >&2
  fi
else
  install_status="skipped"
fi
install_s=$(( $(date +%s) - t0 ))

py="${PYTHON:-}"
if [ -z "$py" ]; then
  if [ -x .venv/bin/python ]; then py=.venv/bin/python; else py=python3; fi
fi
if ! "$py" -c "import torch, gandist" >>"$out/install.log" 2>&1; then
  msg="no Python with torch and gandist ($py); install: $install_status"
  echo "gpu_check.sh: $msg" >&2
  printf '{"gpu_check": 1, "ok": false, "parts": {"install": {"status": "failed", "error": "%s"}}}\n' \
    "$msg" >"$out/gpu_check.json"
  printf '# GPU check\n\nFAILED before starting: %s (see install.log)\n' "$msg" >"$out/gpu_check.md"
  exit 1
fi

args=(run --out "$out" --started "$started" --budget "$budget" --install "$install_status:$install_s")
[ "$dry" = 1 ] && args+=(--dry-run)
export PYTHONPATH="$repo${PYTHONPATH:+:$PYTHONPATH}"
exec "$py" -m benchmarks.gpu_check "${args[@]}"
