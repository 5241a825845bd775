#!/usr/bin/env bash
# One-call GPU check for the machine with the accelerator (see docs/cuda.md): unpacks the Debian packages
# fetched beforehand (no registry is reachable there), configures against PyTorch's LibTorch (CUDA), builds
# only the CUDA kernel tests, runs them, and leaves logs and results in $OUT (or ./cuda-check-out).
#
# Before the device call, here:  bash /work/shared/device/fetch-debs.sh .devdeps   (.devdeps/ is gitignored)
# Device call (carry .devdeps):  bash scripts/cuda-device-check.sh .devdeps
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEBS="${1:-.devdeps}"
OUT="${OUT:-$ROOT/cuda-check-out}"
BUILD="${BUILD_DIR:-/tmp/stepserve-cuda-build}"
PREFIX="${DEPS_PREFIX:-/opt/dd}"
mkdir -p "$OUT"
cd "$ROOT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }

{ nvidia-smi; nvcc --version; python3 -c 'import torch; print("torch", torch.__version__, torch.version.cuda)'; } \
  >"$OUT/machine.txt" 2>&1
log "machine: $(nvidia-smi --query-gpu=name,memory.total --format=csv,noheader 2>/dev/null | head -1)"

# The project's equivalent of shared/device/unpack-debs.sh: dpkg -x into a prefix, never into /.
if [ -d "$DEBS" ]; then
  mkdir -p "$PREFIX"
  for f in "$DEBS"/*.deb; do dpkg -x "$f" "$PREFIX"; done
  [ -e "$PREFIX/usr/bin/civetweb" ] || install -m 755 /dev/null "$PREFIX/usr/bin/civetweb"
  lib="$PREFIX/usr/lib/x86_64-linux-gnu"
  export PATH="$PREFIX/usr/bin:$PATH"
  export LIBRARY_PATH="$lib${LIBRARY_PATH:+:$LIBRARY_PATH}"
  export LD_LIBRARY_PATH="$lib${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
  export PKG_CONFIG_PATH="$lib/pkgconfig${PKG_CONFIG_PATH:+:$PKG_CONFIG_PATH}"
else
  log "no $DEBS directory: relying on system packages"
fi
TORCH_PREFIX="$(python3 -c 'import torch; print(torch.utils.cmake_prefix_path)')"
export CMAKE_PREFIX_PATH="$TORCH_PREFIX;$PREFIX/usr"

log "configure"
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTEPSERVE_BUILD_SERVER=OFF \
  -DSTEPSERVE_BUILD_BENCHMARKS=OFF -DSTEPSERVE_CUDA=ON -DTORCH_CUDA_ARCH_LIST=9.0a >"$OUT/configure.log" 2>&1 \
  || { log "configure FAILED (configure.log)"; tail -40 "$OUT/configure.log"; exit 1; }
log "build cuda_kernels_test"
cmake --build "$BUILD" --target cuda_kernels_test >"$OUT/build.log" 2>&1 \
  || { log "build FAILED (build.log)"; grep -m20 -B2 -A8 "error" "$OUT/build.log"; exit 1; }
log "run cuda_kernels_test"
"$BUILD/tests/cuda_kernels_test" --gtest_output="xml:$OUT/cuda_kernels_test.xml" >"$OUT/cuda_kernels_test.log" 2>&1
rc=$?
tail -60 "$OUT/cuda_kernels_test.log"
log "cuda_kernels_test exit $rc"
exit $rc
