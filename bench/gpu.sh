#!/usr/bin/env bash
# The GPU benchmarks in one run (issue #24), meant to finish within 10 minutes on an H100/H200:
#   1. bench/identity.py --gpu        ArcFace recognition throughput at batch sizes 1..64 (onnxruntime CUDA)
#   2. bench/train_lora.py            LoRA training, SD 1.5 shapes, 512 px, rank 32, ours vs a plain loop
#   3. bench/render_diffusers.py      the diffusers render path vs a plain pipeline call, with and without a LoRA
# Each prints its own `RESULT {json}`; this script ends with all of them, one per line, each prefixed with its
# bench's name, and writes each bench's whole output under $OUT (default: a temp folder).
#
#   bash bench/gpu.sh                 # PYTHON=/path/to/python to use an interpreter with CUDA builds of torch
#                                     # and onnxruntime-gpu (the CPU .venv of a laptop has neither)
#   WHEELS=.whl PYTHON=python3 bash bench/gpu.sh
#                                     # on a PyTorch CUDA image that cannot reach PyPI: first installs the wheels
#                                     # bench/gpu_wheels.sh downloaded, into a temp folder put first on PYTHONPATH
#   bash bench/gpu.sh --tiny          # a rehearsal on the CPU: the same three benches on tiny models and short
#                                     # runs (numbers mean nothing), to check that the script and its imports work
# Exit: 0 when every bench printed its RESULT, 2 without a CUDA device (or unusable WHEELS), 1 when a bench failed
# or ran out of time.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
OUT=${OUT:-$(mktemp -d -t idlock-gpu-XXXX)}
mkdir -p "$OUT"
TINY=0
case "${1:-}" in
  --tiny) TINY=1 ;;
  "") ;;
  *) echo "bench/gpu.sh: unknown argument $1 (the only one is --tiny)" >&2; exit 2 ;;
esac

if [ "$TINY" = 0 ] && ! "$PY" -c 'import sys, torch; sys.exit(0 if torch.cuda.is_available() else 1)' 2>/dev/null; then
  echo "bench/gpu.sh: $PY sees no CUDA device (torch.cuda.is_available() is false); run it on a GPU machine," \
       "with PYTHON set to an interpreter that has CUDA builds of torch and onnxruntime-gpu" \
       "(or --tiny for a CPU rehearsal)" >&2
  exit 2
fi

if [ -n "${WHEELS:-}" ]; then
  if ! ls "$WHEELS"/*.whl >/dev/null 2>&1; then
    echo "bench/gpu.sh: WHEELS=$WHEELS holds no .whl files (bench/gpu_wheels.sh downloads them)" >&2
    exit 2
  fi
  SITE=$(mktemp -d)
  trap 'rm -rf "$SITE"' EXIT
  if ! "$PY" -m pip install --quiet --no-index --no-deps --no-compile --target "$SITE" "$WHEELS"/*.whl; then
    echo "bench/gpu.sh: $PY could not install the wheels in $WHEELS" >&2
    exit 2
  fi
  export PYTHONPATH="$SITE${PYTHONPATH:+:$PYTHONPATH}"
  echo "wheels from $WHEELS installed in $SITE, first on PYTHONPATH"
fi
[ "$TINY" = 0 ] && command -v nvidia-smi >/dev/null \
  && nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader

failed=0
run() {  # name, seconds it may take, command...
  local name=$1 limit=$2
  shift 2
  echo "== $name (at most ${limit} s): $*"
  local t0=$SECONDS
  timeout "$limit" "$PY" "$@" >"$OUT/$name.log" 2>&1
  local rc=$?
  echo "   exit $rc after $((SECONDS - t0)) s; output in $OUT/$name.log"
  grep -q '^RESULT ' "$OUT/$name.log" || { failed=1; tail -n 20 "$OUT/$name.log"; }
}

if [ "$TINY" = 1 ]; then
  run identity 120 bench/identity.py --gpu --batches 1,4 --seconds 0.5
  run train_lora 180 bench/train_lora.py --tiny
  run render_diffusers 180 bench/render_diffusers.py --tiny --images 2
else
  run identity 150 bench/identity.py --gpu
  run train_lora 240 bench/train_lora.py --steps 30 --warmup 5 --rank 32 --resolution 512
  run render_diffusers 180 bench/render_diffusers.py --images 8 --steps 25 --size 512 --lora-rank 32
fi

for name in identity train_lora render_diffusers; do
  line=$(grep '^RESULT ' "$OUT/$name.log" | tail -n 1)
  [ -n "$line" ] && echo "$name $line"
done
exit $failed
