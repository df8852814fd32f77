#!/bin/sh
# Make PyTorch importable in the given interpreter without ever pulling a multi-GB CUDA
# build onto a machine that has no NVIDIA GPU.
#   - a torch that is already importable is kept as it is;
#   - TORCH_SPEC (e.g. "torch==2.13.0" or "torch>=2.10 --index-url URL") overrides everything;
#   - with an NVIDIA GPU: the default PyPI build (CUDA);
#   - without one: a "+cpu" build, first from wheels this machine already has (pip's own
#     find-links configuration), else from PyTorch's CPU wheel index.
set -eu
PY="$1"
if "$PY" -c "import torch" >/dev/null 2>&1; then
    echo "torch $("$PY" -c 'import torch; print(torch.__version__)') already installed: kept"
    exit 0
fi
PIP="$PY -m pip install --quiet"
if [ -n "${TORCH_SPEC:-}" ]; then
    echo "installing $TORCH_SPEC (TORCH_SPEC)"
    # shellcheck disable=SC2086
    $PIP $TORCH_SPEC
elif command -v nvidia-smi >/dev/null 2>&1 && nvidia-smi -L >/dev/null 2>&1; then
    echo "NVIDIA GPU found: installing torch with CUDA from PyPI"
    $PIP "torch>=2.10"
else
    echo "no NVIDIA GPU: installing a CPU build of torch"
    # A "+cpu" local version is never on PyPI, so this cannot fall back to a CUDA build.
    $PIP "torch==2.13.0+cpu" 2>/dev/null \
        || $PIP "torch>=2.10" --index-url https://download.pytorch.org/whl/cpu \
                --extra-index-url https://pypi.org/simple
fi
"$PY" -c "import torch; print('torch', torch.__version__, 'installed')"
