#!/usr/bin/env bash
# Installs the Debian bookworm packages stepserve needs, only those that are missing.
# Idempotent and quiet; runs as root directly, or through sudo otherwise.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build git ca-certificates pkg-config ccache
  libtorch-dev libgloo-dev
  # OpenBLAS replaces the reference BLAS behind libtorch's libblas.so.3 (measured speed-ups in
  # docs/performance.md); the pthread build measured faster than the OpenMP one.
  libopenblas0-pthread
  libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler
  libabsl-dev prometheus-cpp-dev
  libgtest-dev libgmock-dev libbenchmark-dev nlohmann-json3-dev
  # The text front: PCRE2 (tokenizer split patterns, JIT), utf8proc (Unicode normalisation), cpp-httplib
  # (the OpenAI-compatible HTTP front and stepbench's OpenAI client).
  libpcre2-dev libutf8proc-dev libcpp-httplib-dev
  curl openssl
)
# Optional extras (e.g. `STEPSERVE_EXTRA_PACKAGES="prometheus"` for promtool).
if [ -n "${STEPSERVE_EXTRA_PACKAGES:-}" ]; then
  read -r -a extra <<<"${STEPSERVE_EXTRA_PACKAGES}"
  PACKAGES+=("${extra[@]}")
fi

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done
[ ${#missing[@]} -eq 0 ] && exit 0

SUDO=""
if [ "$(id -u)" -ne 0 ]; then
  command -v sudo >/dev/null || { echo "install-deps: need root or sudo to install: ${missing[*]}" >&2; exit 1; }
  SUDO="sudo"
fi
echo "install-deps: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
