# amlit on the official PyTorch CUDA runtime image. The image's torch is kept: pyproject asks only torch>=2.3, and the
# pinned set in constraints.txt is applied without its torch/CUDA lines.
#
#   docker build -t amlit .
#   docker run --rm --gpus all --ipc=host -v "$PWD/data:/data" -v "$PWD/runs:/runs" \
#       amlit fit --config configs/amsoftmax_casia.yaml --trainer.devices=4 --trainer.strategy=ddp
#
# Inside, /workspace/data -> /data and /workspace/runs -> /runs, so the shipped configs' relative paths work as-is.
FROM pytorch/pytorch:2.7.1-cuda12.8-cudnn9-runtime

ENV PYTHONUNBUFFERED=1 \
    PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    NO_ALBUMENTATIONS_UPDATE=1 \
    JSONARGPARSE_DEPRECATION_WARNINGS=off \
    WANDB_DIR=/workspace/runs

WORKDIR /workspace

COPY pyproject.toml README.md constraints.txt ./
COPY amlit ./amlit
# Not editable, so the source folder can go; torch, triton and nvidia-* stay as the image built them.
RUN grep -v -E '^(torch|triton|nvidia-)' constraints.txt > /tmp/constraints.txt \
    && pip install --no-cache-dir -c /tmp/constraints.txt . \
    && rm -rf /tmp/constraints.txt amlit \
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
