#!/usr/bin/env bash
# Compiles every model/kernels/cuda/*.cu with nvcc for sm_90a (H100/H200) into a temporary directory, with
# warnings as errors. Nothing runs: this only proves the kernels build on machines without a GPU.
# Usage: scripts/check-cuda-compile.sh   (nvcc from PATH, else /usr/local/cuda/bin/nvcc; NVCC=... overrides)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
NVCC="${NVCC:-$(command -v nvcc || true)}"
[ -n "$NVCC" ] || NVCC=/usr/local/cuda/bin/nvcc
if [ ! -x "$NVCC" ]; then
  echo "check-cuda-compile: nvcc not found (PATH or /usr/local/cuda/bin/nvcc)" >&2
  exit 1
fi
ARCH="${CUDA_CHECK_ARCH:-90a}"
TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

shopt -s nullglob
files=("$ROOT"/model/kernels/cuda/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "check-cuda-compile: no .cu files under model/kernels/cuda" >&2
  exit 1
fi

failed=0
start=$SECONDS
# One nvcc at a time (the development machines are small and shared).
for f in "${files[@]}"; do
  name="$(basename "$f" .cu)"
  if ! "$NVCC" -std=c++17 -O3 --expt-relaxed-constexpr -gencode "arch=compute_${ARCH},code=sm_${ARCH}" \
      -I"$ROOT" -Werror all-warnings -Xcompiler -Wall,-Wextra -c "$f" -o "$TMP/$name.o" 2>"$TMP/$name.log"; then
    echo "FAILED: model/kernels/cuda/$name.cu" >&2
    cat "$TMP/$name.log" >&2
    failed=$((failed + 1))
  fi
done

version="$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
if [ "$failed" -ne 0 ]; then
  echo "check-cuda-compile: $failed of ${#files[@]} .cu files failed (nvcc $version, sm_$ARCH)" >&2
  exit 1
fi
echo "check-cuda-compile: ${#files[@]} .cu files compiled with nvcc $version for sm_$ARCH" \
  "in $((SECONDS - start)) s, no warnings"
