# jssl for NVIDIA GPUs. No CUDA base image: the `cuda` extra installs `jax[cuda12]`, whose
# nvidia-* wheels bring CUDA, cuDNN and NCCL; the host needs only the NVIDIA driver (and, under
# Docker, the NVIDIA container toolkit: `docker run --gpus all ...`).
#   docker build -t REGISTRY/jssl:TAG .
#   docker run --gpus all -v "$PWD/runs:/runs" REGISTRY/jssl:TAG train --config configs/simclr_mnist.py --workdir /runs/x
# The checkout (configs included) lives in /opt/jssl, the working directory, so relative
# `--config configs/<name>.py` paths resolve here and in launch/kubernetes.yaml.
FROM python:3.12-slim

ENV PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1

WORKDIR /opt/jssl
COPY pyproject.toml setup.py README.md ./
COPY jssl ./jssl
COPY configs ./configs
COPY launch ./launch
RUN pip install '.[cuda]' && jssl --help > /dev/null && jssl configs > /dev/null

ENTRYPOINT ["jssl"]
CMD ["--help"]
