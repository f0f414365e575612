# Images of the AFM service. Targets:
#   serve (the default, last stage): afm-serve on onnxruntime; no torch, no compilers, non-root.
#   train: afm-train on torch's CPU build; the compose stack runs it once to make the default bundle.
# Dependencies are pinned in deploy/requirements/ (deploy/lock.sh writes them).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS base
SHELL ["/bin/bash", "-o", "pipefail", "-c"]
ENV PYTHONDONTWRITEBYTECODE=1 \
    PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1
# One unprivileged user for both images, so the trainer's bundles are readable by the server.
RUN groupadd --system --gid 10001 afm \
    && useradd --system --uid 10001 --gid afm --no-create-home --home-dir /nonexistent afm \
    && mkdir /models && chown afm:afm /models
WORKDIR /app

FROM base AS serve-build
RUN python -m venv /opt/venv
COPY deploy/requirements/serve.txt /tmp/serve.txt
RUN /opt/venv/bin/pip install --no-deps -r /tmp/serve.txt
# Only the torch-free packages: the serving image carries no training code.
COPY pyproject.toml README.md /src/
COPY model /src/model
COPY service /src/service
RUN /opt/venv/bin/pip install --no-deps /src \
    && /opt/venv/bin/pip check \
    && /opt/venv/bin/pip uninstall --yes setuptools pip

FROM base AS train
ARG TORCH_VERSION=2.13.0
ARG TORCH_INDEX_URL=https://download.pytorch.org/whl/cpu
RUN python -m venv /opt/venv
COPY deploy/requirements/train.txt /tmp/train.txt
RUN /opt/venv/bin/pip install --no-deps -r /tmp/train.txt
# torch's CPU build: from a wheel placed in deploy/wheels/ (machines without the PyTorch
# index), else from that index. Both are far smaller than PyPI's CUDA build.
COPY deploy/wheels/ /tmp/wheels/
RUN wheel=$(find /tmp/wheels -name "torch-${TORCH_VERSION}+cpu-*.whl" -print -quit); \
    if [ -n "$wheel" ]; then /opt/venv/bin/pip install --no-deps "$wheel"; \
    else /opt/venv/bin/pip install --no-deps --index-url "$TORCH_INDEX_URL" "torch==${TORCH_VERSION}"; fi; \
    rm -rf /tmp/wheels
COPY pyproject.toml README.md /src/
COPY model /src/model
COPY service /src/service
COPY training /src/training
RUN /opt/venv/bin/pip install --no-deps /src && /opt/venv/bin/pip check
COPY configs /app/configs
# The encoded-data cache (data.cache_dir, relative to /app) is the one place training writes
# besides the bundle.
RUN install -d -o afm -g afm /app/.cache
COPY deploy/train-default.sh /usr/local/bin/afm-train-default
ENV PATH=/opt/venv/bin:$PATH \
    OMP_NUM_THREADS=2 \
    MALLOC_MMAP_THRESHOLD_=4294967296 \
    MALLOC_TRIM_THRESHOLD_=4294967296 \
    MPLCONFIGDIR=/tmp/matplotlib \
    AFM_MODEL_DIR=/models/default
USER 10001:10001
CMD ["afm-train-default"]

FROM base AS serve
COPY --from=serve-build /opt/venv /opt/venv
# Where the impression log goes when AFM_IMPRESSION_LOG_DIR names it (compose mounts a volume
# here; a new volume takes this directory's owner, so the server can write to it).
RUN install -d -o afm -g afm /var/log/afm/impressions
ENV PATH=/opt/venv/bin:$PATH \
    AFM_HOST=0.0.0.0 \
    AFM_PORT=8000 \
    AFM_MODEL_DIR=/models/default \
    AFM_MODELS_ROOT=/models
USER 10001:10001
EXPOSE 8000 8001
HEALTHCHECK --interval=10s --timeout=3s --start-period=30s --retries=3 \
    CMD ["python", "-c", "import os, urllib.request; urllib.request.urlopen('http://127.0.0.1:%s/healthz' % os.environ.get('AFM_PORT', '8000'), timeout=2)"]
CMD ["afm-serve"]
