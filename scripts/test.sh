#!/usr/bin/env bash
# Installs what is missing, builds everything and runs the whole test suite:
#   1. release build: model, executor, server and client tests (ctest);
#   2. ASan + UBSan build of the model tests and of the CUDA kernels' CPU emulation tests;
#   3. ThreadSanitizer build of the executor stress test (OpenBLAS single-threaded: see tests/tsan.supp);
#   4. offline validation of deploy/ (Kubernetes schemas, promtool, Grafana, Dockerfile lint);
#   5. when nvcc is present: the CUDA kernels are compiled (there is no GPU to run them on here).
# Usage: scripts/test.sh            (from anywhere; exits non-zero on the first failure)
#        STEPSERVE_SKIP_SANITIZERS=1 scripts/test.sh   (stages 1, 4 and 5 only, for a quick local run)
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
JOBS="${JOBS:-$(nproc)}"
stage() { echo; echo "==== $* ($(date -u +%H:%M:%S))"; }

stage "installing dependencies"
bash scripts/install-deps.sh

stage "text-front reference tools (npm: tokenizers, @huggingface/jinja, openai)"
bash scripts/install-text-test-tools.sh

stage "layering check"
bash scripts/check-layering.sh

stage "release build"
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "$JOBS"

stage "tests"
ctest --test-dir build -j "$JOBS" --output-on-failure --timeout 900

if [ -z "${STEPSERVE_SKIP_SANITIZERS:-}" ]; then
  stage "ASan + UBSan: model tests"
  cmake -S . -B build-asan -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTEPSERVE_SANITIZE=address,undefined \
    -DSTEPSERVE_BUILD_SERVER=OFF -DSTEPSERVE_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build-asan -j "$JOBS" --target model_tests stepserve-forward cuda_emulation_tests
  # LibTorch is not instrumented: leak reports from its static initialisers are not ours.
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    ./build-asan/tests/model_tests --gtest_brief=1
  ASAN_OPTIONS="detect_leaks=0:abort_on_error=1" UBSAN_OPTIONS="halt_on_error=1:print_stacktrace=1" \
    ./build-asan/tests/cuda_emulation/cuda_emulation_tests --gtest_brief=1

  stage "TSan: executor stress test"
  cmake -S . -B build-tsan -G Ninja -DCMAKE_BUILD_TYPE=Release -DSTEPSERVE_SANITIZE=thread \
    -DSTEPSERVE_BUILD_SERVER=OFF -DSTEPSERVE_BUILD_BENCHMARKS=OFF >/dev/null
  cmake --build build-tsan -j "$JOBS" --target executor_stress_test
  # OpenBLAS (not instrumented) starts no worker threads with OPENBLAS_NUM_THREADS=1: TSan would otherwise
  # report OpenBLAS-internal "races" on Intel AVX-512 machines (tests/tsan.supp says why).
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan.supp" \
    ./build-tsan/tests/executor_stress_test --gtest_filter='-*TwoRanks*'
  # The executor on rank 0 of a two-rank Gloo group: its own run, because LibTorch's uninstrumented Gloo
  # threads need a suppression (tests/tsan-gloo.supp says which and why) that the run above does without.
  OPENBLAS_NUM_THREADS=1 OMP_NUM_THREADS=1 \
    TSAN_OPTIONS="halt_on_error=1 second_deadlock_stack=1 suppressions=$ROOT/tests/tsan-gloo.supp" \
    ./build-tsan/tests/executor_stress_test --gtest_filter='*TwoRanks*'
fi

stage "deploy validation"
STEPSERVE_BIN="$ROOT/build/server/stepserve" bash scripts/validate-deploy.sh

if [ -f scripts/check-cuda-compile.sh ] && { command -v nvcc >/dev/null || [ -x /usr/local/cuda/bin/nvcc ]; }; then
  stage "CUDA kernels compile check"
  bash scripts/check-cuda-compile.sh
fi

stage "all tests passed"
