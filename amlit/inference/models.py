"""A trained model loaded for inference: an amlit checkpoint (PyTorch) or an exported ``.onnx`` (onnxruntime).

Both give uint8 (B, H, W, 3) RGB faces -> (B, D) float32 features, flip-summed and L2-normalized (amlit's test
feature), and say how their input is made (``InputContract``) and which weights they hold (``weights_sha256``).

Nothing loaded here runs code from the file: checkpoints go through ``amlit.checkpoint_io.load_verified``
(weights only, checksum verified, one-line refusals) and name their backbone from amlit's own classes only;
ONNX files are protobuf graphs that onnxruntime executes, read with no Python object in them. The ONNX path imports
neither torch nor Lightning.
"""

from __future__ import annotations

import json
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np

from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.inference.record import InputContract, check_record, input_contract, read_record

ONNX_SUFFIX = ".onnx"
# Metadata keys of an amlit ONNX export (string values).
META_RECORD = "amlit_inference"  # the checkpoint's inference record (JSON)
META_WEIGHTS = "amlit_weights_sha256"
META_INPUT_FORMAT = "amlit_input_format"  # uint8_nhwc | float_nchw
META_FLIP_SUM = "amlit_flip_sum"  # "true": f(x) + f(mirror(x)) inside the graph
META_NORMALIZE = "amlit_l2_normalized"  # "true": L2 normalization inside the graph
META_MODEL_CARD = "amlit_model_card"  # the model card (JSON), calibrated thresholds included
Precision = Literal["32", "bf16"]  # embedding arithmetic of a checkpoint: float32, or bfloat16 autocast
ONNX_EXTRA = 'pip install -e ".[onnx]" (onnx, onnxruntime, onnxscript; `make install` installs them)'


def _l2_normalized(features: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(features, axis=1, keepdims=True)
    return (features / np.maximum(norms, 1e-12)).astype(np.float32)  # F.normalize's eps


@dataclass
class CheckpointModel:
    """An amlit checkpoint's backbone in an ``EmbeddingNet`` on ``device``."""

    source: str
    record: dict
    contract: InputContract
    weights_sha256: str
    net: Any  # amlit.inference.network.EmbeddingNet
    device: Any  # torch.device
    model_card: dict | None = None
    precision: Precision = "32"

    def embed(self, batch: np.ndarray) -> np.ndarray:
        import torch

        # bf16: the backbone under autocast (as `amlit fit/test` with trainer.precision=bf16-mixed); the flip-sum
        # and the normalization in float32 (EmbeddingNet casts the backbone's output)
        bf16 = torch.autocast(self.device.type, dtype=torch.bfloat16, enabled=self.precision == "bf16")
        with torch.inference_mode(), bf16:
            return self.net(torch.from_numpy(batch).to(self.device)).cpu().numpy()


@dataclass
class OnnxModel:
    """An amlit ONNX export run by onnxruntime; preprocessing, flip-sum and normalization that the graph does not
    do itself (its metadata says) are done here in numpy."""

    source: str
    record: dict
    contract: InputContract
    weights_sha256: str
    session: Any  # onnxruntime.InferenceSession
    input_format: str
    flip_sum: bool
    normalize: bool
    model_card: dict | None = None

    def _run(self, batch: np.ndarray) -> np.ndarray:
        if self.input_format == "float_nchw":
            mean, std = self.contract.pixel_mean, self.contract.pixel_std
            batch = ((batch.transpose(0, 3, 1, 2).astype(np.float32) - mean) / std).astype(np.float32)
        (features,) = self.session.run(None, {self.session.get_inputs()[0].name: np.ascontiguousarray(batch)})
        return features.astype(np.float32)

    def embed(self, batch: np.ndarray) -> np.ndarray:
        features = self._run(batch)
        if not self.flip_sum:
            features = features + self._run(batch[:, :, ::-1])  # mirror: reverse the width axis of (B, H, W, 3)
        return features if self.normalize else _l2_normalized(features)


def torch_device(device: str | None):
    """``device`` (default: cuda when available, else cpu) as a torch device this machine has; another is refused
    with the devices there are (torch would stop with a traceback, at the first batch for a missing GPU)."""
    import torch

    if not device:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    gpus = torch.cuda.device_count() if torch.cuda.is_available() else 0
    here = f"cpu{f', cuda:0 .. cuda:{gpus - 1}' if gpus else ''}"
    try:
        target = torch.device(device)
    except RuntimeError:
        raise ConfigError(f"--device={device} is not a torch device; this machine has {here}") from None
    if target.type == "cuda" and (target.index or 0) >= gpus:
        raise ConfigError(f"--device={device}: no such CUDA device here (this machine has {here}); use --device=cpu")
    if target.type == "mps" and not torch.backends.mps.is_available():
        raise ConfigError(f"--device={device}: no Apple GPU (MPS) here (this machine has {here}); use --device=cpu")
    return target


CHECKPOINT_REMEDY = "give a .ckpt that amlit fit wrote (e.g. <run folder>/checkpoints/last.ckpt)"
MODEL_REMEDY = (
    "--model takes an amlit checkpoint (a .ckpt that amlit fit wrote, e.g. <run folder>/checkpoints/last.ckpt) or "
    "an `amlit export onnx` file (.onnx)"
)


def load_checkpoint_model(
    path: str | Path, device: str | None = None, precision: Precision = "32", remedy: str = CHECKPOINT_REMEDY
) -> CheckpointModel:
    """An amlit ``.ckpt`` for inference: verified weights-only load, the recorded backbone rebuilt and filled
    strictly, embedding in ``precision``. Refused with one message (ending with ``remedy`` when the file is no
    readable checkpoint): missing/damaged/code-carrying files, other files (a config), checkpoints without an
    inference record, backbones amlit does not ship."""
    from amlit.checkpoint_io import load_verified
    from amlit.inference.network import EmbeddingNet, backbone_state, load_backbone, weights_digest

    source = str(path)
    checkpoint = load_verified(path, remedy=remedy)
    record = read_record(checkpoint, source)
    contract = input_contract(record, source)
    tensors = backbone_state(checkpoint["state_dict"])
    backbone = load_backbone(record["backbone"], tensors, source)
    net = EmbeddingNet(backbone, contract.pixel_mean, contract.pixel_std)
    target = torch_device(device)
    if precision == "bf16" and target.type == "cpu":
        warnings.warn(
            "bf16 embedding on the CPU: bfloat16 autocast is meant for GPUs; CPUs without bfloat16 units run it "
            "several times slower than float32 (--precision=32)",
            stacklevel=2,
        )
    digest = weights_digest(tensors)
    return CheckpointModel(source, record, contract, digest, net.to(target).eval(), target, precision=precision)


def onnx_session(path: str | Path, device: str | None = None):
    """An onnxruntime session on ``path`` (CUDA when asked for or available in onnxruntime, else CPU)."""
    try:
        import onnxruntime
    except ImportError:
        raise ConfigError(f"running {path} needs onnxruntime: {ONNX_EXTRA}") from None
    available = onnxruntime.get_available_providers()
    wants_gpu = device is None or device.startswith("cuda")
    providers = ["CUDAExecutionProvider"] if wants_gpu and "CUDAExecutionProvider" in available else []
    options = onnxruntime.SessionOptions()
    options.log_severity_level = 3  # errors only: no provider chatter on every run
    try:
        return onnxruntime.InferenceSession(str(path), options, providers=[*providers, "CPUExecutionProvider"])
    except Exception as error:  # onnxruntime raises its own exception types for unreadable models
        reason = (str(error).strip().splitlines() or [type(error).__name__])[0]
        raise BadDataError(f"{path} cannot be loaded as an ONNX model ({reason})") from None


def load_onnx_model(path: str | Path, device: str | None = None) -> OnnxModel:
    """An ``amlit export onnx`` file for inference (its metadata holds the inference record)."""
    source = str(path)
    session = onnx_session(path, device)
    meta = session.get_modelmeta().custom_metadata_map
    if META_RECORD not in meta or META_WEIGHTS not in meta:
        raise BadDataError(
            f"{source} is not an amlit export (no {META_RECORD} metadata): amlit needs to know its input (crop size, "
            "alignment, normalization); export the checkpoint with `amlit export onnx`"
        )
    try:
        record = json.loads(meta[META_RECORD])
        card = json.loads(meta[META_MODEL_CARD]) if META_MODEL_CARD in meta else None
    except json.JSONDecodeError as error:
        raise BadDataError(f"{source}: its amlit metadata is not valid JSON ({error})") from None
    check_record(record, source)
    input_format = meta.get(META_INPUT_FORMAT, "uint8_nhwc")
    if input_format not in ("uint8_nhwc", "float_nchw"):
        raise BadDataError(f"{source}: unknown input format {input_format!r} in its metadata")
    flip_sum, normalize = meta.get(META_FLIP_SUM) == "true", meta.get(META_NORMALIZE) == "true"
    if normalize and not flip_sum:
        raise BadDataError(f"{source} normalizes single views: the feature L2-normalizes the flip-sum, export again")
    return OnnxModel(
        source=source,
        record=record,
        contract=input_contract(record, source),
        weights_sha256=meta[META_WEIGHTS],
        session=session,
        input_format=input_format,
        flip_sum=flip_sum,
        normalize=normalize,
        model_card=card,
    )


def load_model(path: str | Path, device: str | None = None, precision: Precision = "32") -> CheckpointModel | OnnxModel:
    """A checkpoint (``.ckpt``, any other name) or an ONNX export (``.onnx``, float32 only) for inference."""
    path = Path(path)
    if precision not in ("32", "bf16"):
        raise ConfigError(f"precision must be 32 or bf16, got {precision!r}")
    if not path.is_file():
        raise MissingDataError(f"model not found: {path}; pass an amlit checkpoint (.ckpt) or an export (.onnx)")
    if path.suffix.lower() == ONNX_SUFFIX:
        if precision != "32":
            raise ConfigError(f"{path}: an ONNX export runs in float32; embed with the checkpoint for bf16")
        return load_onnx_model(path, device)
    return load_checkpoint_model(path, device, precision, MODEL_REMEDY)
