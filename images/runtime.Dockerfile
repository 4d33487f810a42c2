# The runtime image (charts/greenbatch: runtime.image.repository): `greenbatch-runtime` for the
# operator's profiling Jobs and serving pods, with libtorch 2.11.0 (CUDA 13) and its CUDA libraries
# from the PyPI torch wheel (see shared notes: the PyTorch download site is not used). Build from the
# repository root:
#   docker build -f images/runtime.Dockerfile -t <registry>/greenbatch/runtime:0.1.0 .
# Not built in this project's CI (no container engine there). The GPU node needs an NVIDIA driver
# for CUDA 13 and the NVIDIA device plugin; NVML (energy) comes from the driver the container
# toolkit mounts.
ARG TORCH_VERSION=2.11.0

FROM docker.io/library/python:3.11-slim-bookworm AS torch
ARG TORCH_VERSION
# torch brings libtorch and the nvidia-* runtime wheels it loads (cudart, cublas, cudnn, ...);
# nvidia-cuda-crt adds the CUDA headers `--cuda-graphs` compiles against (build only).
RUN python -m venv /opt/torch \
 && /opt/torch/bin/pip install --no-cache-dir "torch==${TORCH_VERSION}" \
 && CUDART="$(/opt/torch/bin/python -c 'import importlib.metadata as m; print(".".join(m.version("nvidia-cuda-runtime").split(".")[:2]))')" \
 && /opt/torch/bin/pip install --no-cache-dir "nvidia-cuda-crt==${CUDART}.*"

FROM docker.io/library/rust:1-bookworm AS build
# The build checks the binary's --version through a pipe: a failing step must fail the build.
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
COPY --from=torch /opt/torch /opt/torch
ENV LIBTORCH=/opt/torch/lib/python3.11/site-packages/torch
ENV LD_LIBRARY_PATH=${LIBTORCH}/lib
WORKDIR /src
COPY . .
# runtime/build.rs links libtorch_cuda in (the CUDA link trap) and builds CUDA-graph support.
RUN cargo build --release --locked -p greenbatch-runtime \
 && cp target/release/greenbatch-runtime /greenbatch-runtime \
 && /greenbatch-runtime --version | tee /dev/stderr | grep -q "CUDA graphs (--cuda-graphs): yes"

FROM docker.io/library/debian:bookworm-slim
# libtorch's RUNPATH finds the nvidia libraries at $ORIGIN/../../nvidia: keep the site-packages
# layout, without Python itself.
COPY --from=torch /opt/torch/lib/python3.11/site-packages/torch/lib /opt/torch/lib/python3.11/site-packages/torch/lib
COPY --from=torch /opt/torch/lib/python3.11/site-packages/nvidia /opt/torch/lib/python3.11/site-packages/nvidia
COPY --from=build /greenbatch-runtime /usr/local/bin/greenbatch-runtime
ENV LD_LIBRARY_PATH=/opt/torch/lib/python3.11/site-packages/torch/lib
# The operator's pods run as non-root with a read-only root filesystem (operator/src/resources.rs).
USER 65532:65532
ENTRYPOINT ["/usr/local/bin/greenbatch-runtime"]
