#!/usr/bin/env bash
# Installs what is missing, builds the server and starts it on the embedded default model (`tiny`).
# Extra arguments go to the server, e.g. scripts/run.sh --model=small --port=50052
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
bash scripts/install-deps.sh
cmake -S . -B build -G Ninja -DCMAKE_BUILD_TYPE=Release >/dev/null
cmake --build build -j "${JOBS:-$(nproc)}" --target stepserve stepctl
exec ./build/server/stepserve --model=tiny "$@"
