#!/usr/bin/env bash
# The one call for a GPU machine (docs/cuda.md): unpacks the Debian packages fetched beforehand (no
# registry is reachable there), builds everything against PyTorch's LibTorch with the CUDA kernels, then
#   1. runs the CUDA-labelled tests one test per process (ctest), first with CUDA_LAUNCH_BLOCKING=1, so a
#      sticky fault in one kernel cannot turn every later test red and names the launch that failed;
#   2. runs the whole suite with the model on CUDA (STEPSERVE_TEST_DEVICE=cuda: golden fp32 within 1e-4,
#      greedy continuations, executor, server and client end to end), one test per process;
#   3. starts stepserve on the GPU and drives it with stepctl and a short stepbench;
#   4. runs the GPU benchmarks (model_bench on cuda, fp32 and bf16);
#   5. with two or more GPUs: tensor parallel 2 on NCCL (stepserve --tensor_parallel_size=2, greedy
#      continuations against one GPU's, a stepbench run); with one GPU it says so;
# writing logs and results under $OUT (or ./cuda-check-out). Within 10 minutes on an H100/H200.
#
# Before the device call, on the development machine: the device recipe's package fetcher fills .devdeps/
# (gitignored) with the Debian packages (gRPC, protobuf, Abseil, prometheus-cpp, GoogleTest) for the GPU box.
# Device call (carry .devdeps):   OUT=$OUT bash scripts/cuda-device-check.sh .devdeps
set -uo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DEBS="${1:-.devdeps}"
OUT="${OUT:-$ROOT/cuda-check-out}"
BUILD="${BUILD_DIR:-/tmp/stepserve-cuda-build}"
PREFIX="${DEPS_PREFIX:-/opt/dd}"
mkdir -p "$OUT"
cd "$ROOT"
log() { echo "[$(date -u +%H:%M:%S)] $*" | tee -a "$OUT/summary.txt"; }
status=0

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
cmake -S . -B "$BUILD" -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTEPSERVE_CUDA=ON -DTORCH_CUDA_ARCH_LIST=9.0a \
  >"$OUT/configure.log" 2>&1 || { log "configure FAILED (configure.log)"; tail -40 "$OUT/configure.log"; exit 1; }
log "build"
cmake --build "$BUILD" >"$OUT/build.log" 2>&1 \
  || { log "build FAILED (build.log)"; grep -m20 -B2 -A8 "error" "$OUT/build.log"; exit 1; }

log "1. CUDA-labelled tests, one per process, CUDA_LAUNCH_BLOCKING=1"
CUDA_LAUNCH_BLOCKING=1 STEPSERVE_TEST_DEVICE=cuda ctest --test-dir "$BUILD" -L '^cuda$' --timeout 120 \
  --output-junit "$OUT/cuda-tests.xml" >"$OUT/cuda-tests.log" 2>&1 || status=1
tail -5 "$OUT/cuda-tests.log" | tee -a "$OUT/summary.txt"

log "2. the whole suite with the model on CUDA, one test per process"
STEPSERVE_TEST_DEVICE=cuda ctest --test-dir "$BUILD" -j 8 --timeout 300 \
  --output-junit "$OUT/all-tests.xml" >"$OUT/all-tests.log" 2>&1 || status=1
tail -25 "$OUT/all-tests.log" | tee -a "$OUT/summary.txt"

log "3. stepserve on the GPU, stepctl and stepbench"
"$BUILD/server/stepserve" --model=tiny --device=cuda --port=50071 --metrics_port=9471 --http_port=0 >"$OUT/stepserve.log" 2>&1 &
server_pid=$!
for _ in $(seq 1 120); do
  "$BUILD/client/stepctl" --target=127.0.0.1:50071 health >/dev/null 2>&1 && break
  sleep 0.5
done
{ "$BUILD/client/stepctl" --target=127.0.0.1:50071 health &&
  "$BUILD/client/stepctl" --target=127.0.0.1:50071 generate --tokens=1,2,3 --max_new_tokens=16 &&
  "$BUILD/client/stepbench" --target=127.0.0.1:50071 --num_requests=64 --concurrency=16 --prompt_len=64 \
    --output_len=32 --metrics_url=http://127.0.0.1:9471/metrics --json_out="$OUT/stepbench.json"; } \
  >"$OUT/clients.log" 2>&1 || status=1
kill -TERM "$server_pid" 2>/dev/null; wait "$server_pid"
tail -30 "$OUT/clients.log" | tee -a "$OUT/summary.txt"

log "4. GPU benchmarks (model_bench, small preset)"
for dtype in float32 bfloat16; do
  STEPSERVE_BENCH_DEVICE=cuda STEPSERVE_BENCH_DTYPE=$dtype timeout 150 "$BUILD/bench/model_bench" \
    --benchmark_min_time=0.2 --benchmark_out="$OUT/model_bench_$dtype.json" --benchmark_out_format=json \
    >"$OUT/model_bench_$dtype.log" 2>&1 || status=1
  tail -12 "$OUT/model_bench_$dtype.log" | tee -a "$OUT/summary.txt"
done

log "5. tensor parallelism on NCCL"
grep -i "NCCL" "$OUT/configure.log" | tee -a "$OUT/summary.txt"
gpus=$(nvidia-smi --query-gpu=name --format=csv,noheader 2>/dev/null | wc -l)
if [ "$gpus" -lt 2 ]; then
  log "only $gpus GPU on this machine: tensor parallel 2 not run (the CPU/Gloo tests above cover the logic)"
else
  for tp in 1 2; do
    "$BUILD/server/stepserve" --model=small:4 --device=cuda --dtype=bfloat16 --tensor_parallel_size=$tp \
      --port=5008$tp --metrics_port=-1 --http_port=0 >"$OUT/stepserve_tp$tp.log" 2>&1 &
    eval "tp${tp}_pid=$!"
  done
  for tp in 1 2; do
    for _ in $(seq 1 240); do
      "$BUILD/client/stepctl" --target=127.0.0.1:5008$tp health >/dev/null 2>&1 && break
      sleep 0.5
    done
    "$BUILD/client/stepctl" --target=127.0.0.1:5008$tp generate --tokens=1,2,3,4,5 --max_new_tokens=24 --ignore_eos \
      >"$OUT/tp$tp-greedy.txt" 2>&1 || status=1
  done
  if [ "$(head -1 "$OUT/tp1-greedy.txt")" = "$(head -1 "$OUT/tp2-greedy.txt")" ]; then
    log "tensor parallel 2: the same greedy tokens as one GPU"
  else
    log "tensor parallel 2: greedy tokens DIFFER from one GPU's (bf16; see tp1-greedy.txt, tp2-greedy.txt)"
  fi
  "$BUILD/client/stepbench" --target=127.0.0.1:50082 --num_requests=64 --concurrency=16 --prompt_len=64 \
    --output_len=32 --json_out="$OUT/stepbench_tp2.json" >"$OUT/stepbench_tp2.log" 2>&1 || status=1
  tail -20 "$OUT/stepbench_tp2.log" | tee -a "$OUT/summary.txt"
  kill -TERM "$tp1_pid" "$tp2_pid" 2>/dev/null; wait "$tp1_pid" "$tp2_pid"
fi

log "done, exit $status"
exit $status
