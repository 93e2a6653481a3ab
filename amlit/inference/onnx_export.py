"""``amlit export onnx``: a checkpoint -> a single-file ONNX model with a dynamic batch, checked against PyTorch.

How: ``torch.export.export`` traces ``EmbeddingNet`` with the batch dimension symbolic (strict: a graph that would
pin the batch size fails here, not later), then ``torch.onnx.export`` (the dynamo-based exporter, torch's default
since 2.9; it needs ``onnxscript``) converts it at ``opset`` (>= 17) into one file with its weights inside. Only
PyPI packages are needed (``pip install -e ".[onnx]"``), nothing is downloaded at export time.

The graph's input contract (in the metadata and the model card):

- ``uint8_nhwc`` (default): ``images`` uint8 (B, H, W, 3) RGB, aligned faces as the model was trained on; the graph
  normalizes (x - mean) / std itself.
- ``float_nchw``: ``images`` float32 (B, 3, H, W), already normalized (x - mean) / std by the caller.

``features`` (B, D) float32: with ``flip_sum`` f(x) + f(mirror(x)) computed inside, with ``normalize`` also
L2-normalized: both on (the default) is amlit's test feature, ready for cosine = dot product.

Every export is checked before it is kept: onnxruntime and PyTorch embed random images and generated faces
(encoded as JPEG and decoded as files are) at batch sizes 1 and 7; the largest absolute difference and the smallest
cosine between the two are printed, and an export whose cosine falls below 0.9999 (fp32) is refused and removed.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from amlit.errors import ConfigError, UserInputError
from amlit.inference import models
from amlit.inference.network import InputFormat
from amlit.outputs import check_output

MIN_OPSET = 17
PARITY_MIN_COSINE = 0.9999
PARITY_BATCH_SIZES = (1, 7)


class ExportParityError(UserInputError, RuntimeError):
    """The exported graph does not compute what the PyTorch model computes."""


@dataclass(frozen=True)
class Parity:
    """PyTorch vs onnxruntime on one batch: the largest |difference| of an output and the smallest cosine of rows."""

    what: str
    batch_size: int
    max_abs_difference: float
    min_cosine: float

    def line(self) -> str:
        return (
            f"parity {self.what}, batch {self.batch_size}: max |onnx - torch| = {self.max_abs_difference:.3g}, "
            f"min cosine = {self.min_cosine:.7f}"
        )


def parity_inputs(image_size: tuple[int, int], seed: int = 0) -> list[tuple[str, np.ndarray]]:
    """(what, uint8 (B, H, W, 3)) batches: uniform random pixels, and generated faces encoded as JPEG and decoded as
    files are (the real format), at each batch size of ``PARITY_BATCH_SIZES``."""
    import cv2

    from amlit.data.images import decode_image
    from amlit.data.synthetic import random_identity, render_face

    rng = np.random.default_rng(seed)
    batches = []
    for size in PARITY_BATCH_SIZES:
        batches.append(("random images", rng.integers(0, 256, (size, *image_size, 3), dtype=np.uint8)))
        faces = []
        for _ in range(size):
            face = render_face(random_identity(rng), rng, image_size)  # (H, W, 3) RGB
            encoded = cv2.imencode(".jpg", cv2.cvtColor(face, cv2.COLOR_RGB2BGR))[1].tobytes()
            faces.append(cv2.cvtColor(decode_image(encoded), cv2.COLOR_BGR2RGB))
        batches.append(("JPEG faces", np.stack(faces)))
    return batches


def check_parity(session, net, input_format: InputFormat, mean: float, std: float, image_size) -> list[Parity]:
    """Run ``parity_inputs`` through the onnxruntime ``session`` and the torch ``net`` (same input format)."""
    import torch

    results = []
    for what, batch in parity_inputs(image_size):
        graph_input = batch
        if input_format == "float_nchw":
            graph_input = ((batch.transpose(0, 3, 1, 2).astype(np.float32) - mean) / std).astype(np.float32)
        with torch.inference_mode():
            expected = net(torch.from_numpy(graph_input)).double().numpy()
        (got,) = session.run(None, {session.get_inputs()[0].name: graph_input})
        got = got.astype(np.float64)
        cosines = (got * expected).sum(1) / (np.linalg.norm(got, axis=1) * np.linalg.norm(expected, axis=1))
        results.append(Parity(what, len(batch), float(np.abs(got - expected).max()), float(cosines.min())))
    return results


def _check_card_beside(output: Path) -> None:
    """The export writes its model card beside it: refuse a folder whose ``model_card.json`` is another's (the one
    ``amlit test`` wrote beside results.json, with its evaluation and calibration, or another export's), which it
    would replace; a new export of the same file replaces its own card."""
    from amlit.inference.calibration import CARD_JSON

    beside = output.parent / CARD_JSON
    if not beside.is_file():
        return
    try:
        card = json.loads(beside.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        card = None
    export = card.get("export") if isinstance(card, dict) else None
    if isinstance(export, dict) and export.get("file") == output.name:
        return
    owner = (
        f"the card of the export {export.get('file')}"
        if isinstance(export, dict)
        else "the card amlit test wrote (evaluation and calibrated thresholds)"
        if isinstance(card, dict) and card.get("evaluation")
        else "a model card that is not this export's"
    )
    raise ConfigError(
        f"{beside} is {owner}; the export writes its own model_card.json beside {output.name} and would replace it: "
        "give --output in a folder of its own (one export per folder, e.g. export/model.onnx)"
    )


def export_onnx(
    checkpoint: Path,
    output: Path,
    input_format: InputFormat = "uint8_nhwc",
    flip_sum: bool = True,
    normalize: bool = True,
    opset: int = 18,
    calibration: Path | None = None,
    model_license: str | None = None,
) -> dict:
    """Export a checkpoint to ONNX (dynamic batch), check it against PyTorch, write model_card.md/.json beside it.

    Args:
        checkpoint: an amlit checkpoint (.ckpt), loaded as weights only.
        output: the .onnx file to write (one file, weights inside).
        input_format: uint8_nhwc (uint8 (B, H, W, 3) RGB faces; normalized inside) or float_nchw (float32
            (B, 3, H, W), normalized (x - mean) / std by the caller; mean and std are in the model card).
        flip_sum: compute f(x) + f(mirror(x)) inside the graph (else amlit embed/verify do it outside).
        normalize: L2-normalize the features inside the graph (needs flip_sum: the feature normalizes the sum).
        opset: ONNX opset, >= 17.
        calibration: the model_card.json amlit test wrote for this checkpoint: its calibrated thresholds, results
            and license go into the export (amlit verify then needs nothing else).
        model_license: license of the model for its card (default: the calibration card's).

    Returns:
        The parity results and the export's path.
    """
    import torch

    from amlit.data.images import file_sha256
    from amlit.inference.calibration import read_card
    from amlit.inference.model_card import build_card, write_card
    from amlit.inference.network import EmbeddingNet

    output = Path(output)
    if output.suffix != models.ONNX_SUFFIX:
        raise ConfigError(f"--output must name an .onnx file, got {output}")
    check_output(output, "--output")
    _check_card_beside(output)
    if opset < MIN_OPSET:
        raise ConfigError(f"--opset must be >= {MIN_OPSET}, got {opset}")
    if input_format not in ("uint8_nhwc", "float_nchw"):
        raise ConfigError(f"--input_format must be uint8_nhwc or float_nchw, got {input_format!r}")
    if normalize and not flip_sum:
        raise ConfigError("--normalize=true needs --flip_sum=true: the feature is the L2-normalized flip-sum")
    try:
        import onnxruntime  # noqa: F401
        import onnxscript  # noqa: F401
    except ImportError as error:
        raise ConfigError(f"amlit export onnx needs {error.name}: {models.ONNX_EXTRA}") from None

    model = models.load_checkpoint_model(checkpoint, device="cpu")
    card = None
    if calibration is not None:
        card = read_card(calibration)
        if card["weights_sha256"] != model.weights_sha256:
            raise ConfigError(f"{calibration} describes other weights than {checkpoint}: pass the card of this model")
    contract = model.contract
    net = EmbeddingNet(model.net.backbone, contract.pixel_mean, contract.pixel_std, input_format, flip_sum, normalize)
    net.eval()
    height, width = contract.image_size
    example = (
        torch.zeros((2, height, width, 3), dtype=torch.uint8)
        if input_format == "uint8_nhwc"
        else torch.zeros((2, 3, height, width), dtype=torch.float32)
    )
    batch = torch.export.Dim("batch", min=1)
    exported = torch.export.export(net, (example,), dynamic_shapes={"images": {0: batch}})
    program = torch.onnx.export(
        exported, opset_version=opset, dynamo=True, input_names=["images"], output_names=["features"], verbose=False
    )
    license_text = model_license if model_license is not None else (card or {}).get("license")
    export_info = {
        "file": output.name,
        "opset": opset,
        "input": "images",
        "input_format": input_format,
        "flip_sum_inside": flip_sum,
        "l2_normalized_inside": normalize,
        "output": "features",
        "dynamic_batch": True,
        "exporter": f"torch {torch.__version__} torch.export + torch.onnx (dynamo)",
    }
    card_data = build_card(
        model.record,
        model.weights_sha256,
        source={"checkpoint": str(checkpoint), "calibration": str(calibration) if calibration else None},
        evaluation=(card or {}).get("evaluation"),
        calibration=((card or {}).get("calibration") or {}).get("sets"),
        license=license_text,
        export=export_info,
    )
    program.model.metadata_props.update(
        {
            models.META_RECORD: json.dumps(model.record),
            models.META_WEIGHTS: model.weights_sha256,
            models.META_INPUT_FORMAT: input_format,
            models.META_FLIP_SUM: "true" if flip_sum else "false",
            models.META_NORMALIZE: "true" if normalize else "false",
            models.META_MODEL_CARD: json.dumps(card_data, default=str),
        }
    )
    output.parent.mkdir(parents=True, exist_ok=True)
    partial = output.with_name(f".{output.name}.{os.getpid()}.partial")
    try:
        program.save(partial, external_data=False)
        session = models.onnx_session(partial, device="cpu")
        parity = check_parity(session, net, input_format, contract.pixel_mean, contract.pixel_std, (height, width))
        for result in parity:
            print(result.line())
        worst = min(result.min_cosine for result in parity)
        if not worst >= PARITY_MIN_COSINE:
            raise ExportParityError(
                f"the ONNX graph does not match the PyTorch model (min cosine {worst:.6f} < {PARITY_MIN_COSINE}): "
                f"{output} was not written; try another --opset, and report it with the parity lines above"
            )
        os.replace(partial, output)
    finally:
        partial.unlink(missing_ok=True)
    export_info["sha256"] = file_sha256(output)
    export_info["parity"] = [result.line() for result in parity]
    card_paths = write_card(output.parent, card_data)
    print(f"wrote {output} ({output.stat().st_size / 2**20:.1f} MiB) and {card_paths[1].name}/.json beside it")
    return {"output": str(output), "parity": [vars(result) for result in parity]}
