#!/usr/bin/env bash
# Compiles every model/ops/cuda/*.cu with nvcc for sm_90a (H100/H200) into a temporary directory, with
# warnings as errors, and syntax-checks the C++ call sites under STEPSERVE_CUDA. Nothing runs: this only
# proves the CUDA path builds on machines without a GPU.
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
files=("$ROOT"/model/ops/cuda/*.cu)
if [ ${#files[@]} -eq 0 ]; then
  echo "check-cuda-compile: no .cu files under model/ops/cuda" >&2
  exit 1
fi

failed=0
start=$SECONDS
# One nvcc at a time (the development machines are small and shared).
for f in "${files[@]}"; do
  name="$(basename "$f" .cu)"
  if ! "$NVCC" -std=c++17 -O3 --expt-relaxed-constexpr -gencode "arch=compute_${ARCH},code=sm_${ARCH}" \
      -I"$ROOT" -Werror all-warnings -Xcompiler -Wall,-Wextra -c "$f" -o "$TMP/$name.o" 2>"$TMP/$name.log"; then
    echo "FAILED: model/ops/cuda/$name.cu" >&2
    cat "$TMP/$name.log" >&2
    failed=$((failed + 1))
  fi
done

# Host side: every C++ file with a STEPSERVE_CUDA branch is syntax-checked with it defined, against
# LibTorch's c10/cuda headers (Debian's libtorch-dev ships them) and the CUDA toolkit's includes, so a
# broken call site of a kernel cannot land either. Debian's headers lack the CMake-generated
# cuda_cmake_macros.h; an empty one stands in. The tensor-parallel communicator's NCCL branch is checked
# too (c10d's ProcessGroupNCCL header from Debian's LibTorch, nccl.h from the CUDA toolkit).
TORCH_INC="${TORCH_INCLUDE:-/usr/include}"
CUDA_INC="$(dirname "$(dirname "$(readlink -f "$NVCC")")")/include"
host_checked=0
if [ -f "$TORCH_INC/c10/cuda/CUDAStream.h" ] && [ -f "$CUDA_INC/cuda_runtime_api.h" ]; then
  mkdir -p "$TMP/stub/c10/cuda/impl"
  echo '#pragma once' >"$TMP/stub/c10/cuda/impl/cuda_cmake_macros.h"
  mapfile -t host_files < <(cd "$ROOT" && { grep -rl --include='*.cc' 'STEPSERVE_CUDA' model engine parallel server 2>/dev/null || true;
    ls model/ops/*_cuda.cc model/ops/cuda_util.cc tests/cuda/*.cc 2>/dev/null || true; } | sort -u)
  for f in "${host_files[@]}"; do
    if ! "${CXX:-g++}" -fsyntax-only -std=gnu++17 -DSTEPSERVE_CUDA -DUSE_C10D_GLOO -DSTEPSERVE_NCCL -DUSE_C10D_NCCL -D_GLIBCXX_USE_CXX11_ABI=1 -Wall -Wextra \
        -Wno-unused-parameter -Werror -I"$ROOT" -isystem "$TORCH_INC/torch/csrc/api/include" \
        -isystem "$TMP/stub" -isystem "$CUDA_INC" "$ROOT/$f" 2>"$TMP/host.log"; then
      echo "FAILED (host, -DSTEPSERVE_CUDA): $f" >&2
      cat "$TMP/host.log" >&2
      failed=$((failed + 1))
    fi
    host_checked=$((host_checked + 1))
  done
else
  echo "check-cuda-compile: no c10/cuda headers under $TORCH_INC: host call sites not checked" >&2
fi

version="$("$NVCC" --version | sed -n 's/.*release \([0-9.]*\).*/\1/p')"
if [ "$failed" -ne 0 ]; then
  echo "check-cuda-compile: $failed file(s) failed (nvcc $version, sm_$ARCH)" >&2
  exit 1
fi
echo "check-cuda-compile: ${#files[@]} .cu files compiled with nvcc $version for sm_$ARCH and" \
  "$host_checked host files checked with -DSTEPSERVE_CUDA, in $((SECONDS - start)) s, no warnings"
