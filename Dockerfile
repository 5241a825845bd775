# syntax=docker/dockerfile:1
#
# stepserve container image: a CUDA 13 build stage that compiles stepserve, stepctl and stepbench
# against LibTorch (CUDA 13.0) and Ubuntu 24.04's gRPC 1.51 / protobuf / Abseil / prometheus-cpp, and a
# slim runtime stage holding only the binaries and the shared libraries they load.
#
#   docker build -t stepserve:0.1.0 .                          # CUDA (default)
#   docker build -t stepserve:cpu --build-arg FLAVOR=cpu .     # CPU-only LibTorch on plain Ubuntu
#   docker run --gpus=1 -p 50051:50051 -p 9400:9400 stepserve:0.1.0 --model=flash:4 --device=cuda
#
# NOT BUILT HERE: the development machines have no Docker engine. It mirrors the build that runs on the
# GPU machine (LibTorch 2.11 cu130 + the same gRPC/protobuf/Abseil/prometheus-cpp versions); see
# docs/deploy.md. scripts/validate-deploy.sh lints it (dockerfilelint and the project's own rules).

ARG FLAVOR=cuda
ARG CUDA_VERSION=13.0.1
ARG UBUNTU_VERSION=24.04
ARG TORCH_VERSION=2.11.0

# ---- per-flavor bases ------------------------------------------------------------------------------
FROM nvidia/cuda:${CUDA_VERSION}-cudnn-devel-ubuntu${UBUNTU_VERSION} AS build-base-cuda
ARG TORCH_VERSION
ENV LIBTORCH_URL=https://download.pytorch.org/libtorch/cu130/libtorch-shared-with-deps-${TORCH_VERSION}%2Bcu130.zip

FROM ubuntu:${UBUNTU_VERSION} AS build-base-cpu
ARG TORCH_VERSION
ENV LIBTORCH_URL=https://download.pytorch.org/libtorch/cpu/libtorch-shared-with-deps-${TORCH_VERSION}%2Bcpu.zip

# The runtime needs no CUDA toolkit library of its own: LibTorch's "with-deps" archive carries cuBLAS,
# cuDNN, NCCL and the CUDA runtime it was built with; `base` adds the driver-compat setup that the
# NVIDIA container toolkit expects. Use the -runtime- tag instead if you add kernels that link
# CUDA libraries outside LibTorch.
FROM nvidia/cuda:${CUDA_VERSION}-base-ubuntu${UBUNTU_VERSION} AS runtime-base-cuda
FROM ubuntu:${UBUNTU_VERSION} AS runtime-base-cpu

# ---- build -------------------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM build-base-${FLAVOR} AS build
ARG DEBIAN_FRONTEND=noninteractive
# GPU architectures for LibTorch's CUDA code paths and any project kernels (Ampere .. Blackwell).
ARG TORCH_CUDA_ARCH_LIST="8.0;8.6;8.9;9.0;10.0;12.0"
ARG CMAKE_EXTRA_ARGS=""
RUN apt-get update \
 && apt-get install -y --no-install-recommends \
      build-essential cmake ninja-build git ca-certificates curl unzip pkg-config file \
      libgrpc++-dev protobuf-compiler-grpc libprotobuf-dev protobuf-compiler \
      libabsl-dev prometheus-cpp-dev nlohmann-json3-dev libpcre2-dev libutf8proc-dev libcpp-httplib-dev \
 && rm -rf /var/lib/apt/lists/*

# LibTorch (C++11 ABI, shared, with its CUDA dependencies) in /opt/libtorch.
RUN curl -fsSL --retry 3 -o /tmp/libtorch.zip "${LIBTORCH_URL}" \
 && unzip -q /tmp/libtorch.zip -d /opt \
 && rm /tmp/libtorch.zip \
 && test -f /opt/libtorch/share/cmake/Torch/TorchConfig.cmake

WORKDIR /src
COPY . .

# Only the three programs; no tests, no benchmarks (they need GoogleTest / Google Benchmark).
ENV TORCH_CUDA_ARCH_LIST=${TORCH_CUDA_ARCH_LIST}
# hadolint ignore=SC2086
RUN cmake -S . -B /build -G Ninja \
      -DCMAKE_BUILD_TYPE=Release \
      -DCMAKE_PREFIX_PATH=/opt/libtorch \
      -DSTEPSERVE_BUILD_TESTS=OFF \
      -DSTEPSERVE_BUILD_BENCHMARKS=OFF \
      ${CMAKE_EXTRA_ARGS} \
 && cmake --build /build --target stepserve stepctl stepbench

# Stage the binaries and the shared libraries they need beyond LibTorch's own directory (gRPC, protobuf,
# Abseil, prometheus-cpp, OpenSSL, c-ares, re2, zlib...), found with ldd; glibc and libstdc++/libgcc
# come with the runtime image, libcuda.so.1 with the NVIDIA container toolkit at run time.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
RUN mkdir -p /stage/bin /stage/lib \
 && for t in stepserve stepctl stepbench; do \
      f="$(find /build -type f -name "$t" -perm -u+x | head -n 1)"; \
      test -n "$f" || { echo "target $t not built" >&2; exit 1; }; \
      cp "$f" /stage/bin/; \
    done \
 && strip --strip-unneeded /stage/bin/* \
 && if ldd /stage/bin/* | grep 'not found' | grep -v 'libcuda\.so'; then echo "unresolved libraries" >&2; exit 1; fi \
 && ldd /stage/bin/* | awk '/=> \// { print $3 }' | sort -u \
    | { grep -Ev '^/opt/libtorch/|/(libc|libm|libdl|libpthread|librt|libresolv|libgcc_s|libstdc\+\+|libcuda)\.so|/ld-linux' || true; } \
    | xargs -r -I{} cp -L {} /stage/lib/

# ---- runtime -----------------------------------------------------------------------------------------
# hadolint ignore=DL3006
FROM runtime-base-${FLAVOR} AS runtime
ARG DEBIAN_FRONTEND=noninteractive
LABEL org.opencontainers.image.title="stepserve" \
      org.opencontainers.image.description="gRPC model server for the Step3p5 LLM family" \
      org.opencontainers.image.licenses="Apache-2.0"

# LibTorch keeps its build-tree RPATH (/opt/libtorch/lib) in the binaries; the rest via ld.so.conf.
COPY --from=build /opt/libtorch/lib /opt/libtorch/lib
COPY --from=build /stage/lib /usr/local/lib/stepserve
COPY --from=build /stage/bin /usr/local/bin
RUN echo /usr/local/lib/stepserve > /etc/ld.so.conf.d/stepserve.conf \
 && ldconfig \
 && groupadd --system --gid 10001 stepserve \
 && useradd --system --uid 10001 --gid 10001 --no-create-home --home-dir /tmp --shell /usr/sbin/nologin stepserve \
 && if ldd /usr/local/bin/stepserve /usr/local/bin/stepctl /usr/local/bin/stepbench | grep 'not found' | grep -v 'libcuda\.so'; then exit 1; fi

# A read-only root filesystem is fine: the server writes nothing; /tmp is the only scratch space
# (Kubernetes mounts an emptyDir there). Checkpoints are mounted read-only (e.g. at /models).
ENV HOME=/tmp
USER 10001:10001
WORKDIR /tmp
EXPOSE 50051/tcp 9400/tcp 8000/tcp

# Kubernetes ignores HEALTHCHECK and uses the gRPC probes; this serves `docker run` and compose.
HEALTHCHECK --interval=15s --timeout=5s --start-period=120s --retries=3 \
  CMD ["stepctl", "--target=127.0.0.1:50051", "--timeout_s=3", "health"]

# Drain on SIGTERM (grpc.health NOT_SERVING, in-flight requests finish up to --drain_timeout_s).
STOPSIGNAL SIGTERM
ENTRYPOINT ["stepserve"]
CMD ["--host=0.0.0.0", "--port=50051", "--metrics_port=9400", "--http_port=8000"]
