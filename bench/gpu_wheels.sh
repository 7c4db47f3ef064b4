#!/usr/bin/env bash
# The wheels bench/gpu.sh needs on a GPU machine whose image has PyTorch with CUDA (and transformers, peft,
# accelerate, onnx, opencv, scikit-image) but cannot reach PyPI: download them here, take the folder there, run
#   WHEELS=<folder> PYTHON=python3 bash bench/gpu.sh
# gpu.sh installs them into a temporary folder first on its PYTHONPATH, so they win over the image's own copies and
# nothing of the image changes.
#
#   bash bench/gpu_wheels.sh [DIR] [--onnxruntime-gpu]
#
# DIR: where the wheels go (default .whl/, which git ignores). The versions are those this checkout's .venv runs
# (what the tests ran), built for CPython $PYTHON_VERSION (default 3.12) on x86-64 Linux.
# --onnxruntime-gpu: also onnxruntime-gpu (~250 MB, CUDA 13), which bench/identity.py --gpu needs to run ArcFace on
# the GPU; without it that bench runs on the image's CPU onnxruntime and says so. Leave it out where the folder must
# stay small: the other wheels come to ~11 MB.
set -euo pipefail
cd "$(dirname "$0")/.."
DIR=.whl
WITH_ORT=0
for arg in "$@"; do
  case $arg in
    --onnxruntime-gpu) WITH_ORT=1 ;;
    -h | --help) awk 'NR > 1 && !/^#/ { exit } NR > 1 { sub(/^# ?/, ""); print }' "$0"; exit 0 ;;
    -*) echo "bench/gpu_wheels.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
    *) DIR=$arg ;;
  esac
done
VENV_PY=${VENV_PYTHON:-.venv/bin/python}
[ -x "$VENV_PY" ] || { echo "bench/gpu_wheels.sh: $VENV_PY not found: run ./setup.sh first (it pins the versions)" >&2; exit 2; }

# what the three benches import that a PyTorch CUDA image lacks (found by running them in such an environment),
# and peft, which such images carry at versions of their own: the LoRA code is tested with this one
PACKAGES=(diffusers importlib-metadata insightface pydantic pydantic-core pydantic-settings python-dotenv
  typing-inspection annotated-types peft)
[ "$WITH_ORT" = 1 ] && PACKAGES+=(onnxruntime-gpu)

pinned=()
for name in "${PACKAGES[@]}"; do
  version=$("$VENV_PY" -c 'import sys; from importlib.metadata import version; print(version(sys.argv[1]))' "$name" 2>/dev/null) \
    || { echo "bench/gpu_wheels.sh: $name is not installed in $VENV_PY" >&2; exit 2; }
  pinned+=("$name==$version")
done

mkdir -p "$DIR"
for name in "${PACKAGES[@]}"; do  # another version left from an earlier download would be installed beside it
  rm -f "$DIR/${name//-/_}"-*.whl
done
"$VENV_PY" -m pip download --quiet --no-deps --only-binary=:all: --dest "$DIR" \
  --python-version "${PYTHON_VERSION:-3.12}" --implementation cp \
  --platform manylinux_2_28_x86_64 --platform manylinux_2_27_x86_64 --platform manylinux_2_17_x86_64 \
  --platform manylinux2014_x86_64 "${pinned[@]}"
echo "bench/gpu_wheels.sh: ${#pinned[@]} wheels in $DIR ($(du -sh "$DIR" | cut -f1)): ${pinned[*]}"
