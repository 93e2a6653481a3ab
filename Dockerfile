# amlit on the official PyTorch CUDA runtime image. Its torch must be the version the project is tested with (the
# torch line of constraints.txt): the build stops otherwise, and pip keeps that torch while it installs the pinned rest.
#
#   docker build -t amlit .
#   docker run --rm --gpus all --ipc=host -v "$PWD/data:/data" -v "$PWD/runs:/runs" \
#       amlit fit --config configs/amsoftmax_casia.yaml --trainer.devices=4 --trainer.strategy=ddp
#
# The default base's torch is built for CUDA 13.0, which needs an NVIDIA driver of the R580 series or newer. Any base
# with the tested torch and `python`/`pip` on PATH works: --build-arg BASE_IMAGE=... (a cuda12.x tag for older drivers).
# Inside, /workspace/data -> /data and /workspace/runs -> /runs, so the shipped configs' relative paths work as-is.
ARG BASE_IMAGE=pytorch/pytorch:2.13.0-cuda13.0-cudnn9-runtime
FROM ${BASE_IMAGE}

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    JSONARGPARSE_DEPRECATION_WARNINGS=off \
    WANDB_DIR=/workspace/runs

WORKDIR /workspace

COPY pyproject.toml README.md constraints.txt ./
COPY amlit ./amlit
# Not editable, so the source folder can go; torch and its CUDA libraries stay as the image built them (pinned to the
# installed build so that no dependency can swap it).
RUN tested="$(sed -n 's/^torch==\([0-9.]*\).*/\1/p' constraints.txt)" \
    && installed="$(python -c 'import torch; print(torch.__version__)')" \
    && if [ "${installed%%+*}" != "$tested" ]; then \
        echo "error: the base image has torch $installed; amlit is tested with torch $tested (constraints.txt)." \
            "Use a base image with torch $tested (--build-arg BASE_IMAGE=...)." >&2; \
        exit 1; \
    fi \
    && { grep -v -E '^(torch|triton|nvidia-)' constraints.txt; echo "torch==$installed"; } > /tmp/constraints.txt \
    && pip install --no-cache-dir -c /tmp/constraints.txt . \
    && rm -rf /tmp/constraints.txt amlit build amlit.egg-info \
    && python -c "import torch, lightning, amlit; print('torch', torch.__version__, '| lightning', lightning.__version__)"

COPY configs ./configs
COPY sweeps ./sweeps

# Non-root; data and runs are volumes (mount a host folder, or run with --user "$(id -u):$(id -g)" to write as you).
RUN useradd --create-home --uid 1000 amlit \
    && mkdir -p /data /runs \
    && chown amlit:amlit /data /runs \
    && ln -s /data /workspace/data \
    && ln -s /runs /workspace/runs
VOLUME ["/data", "/runs"]
USER 1000:1000

ENTRYPOINT ["amlit"]
CMD ["--help"]
