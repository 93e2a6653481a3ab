"""``amlit convert caffe``: a Caffe ``.caffemodel`` of SphereFace-20/36/64 (e.g. the AM-Softmax authors' released
model) -> an amlit checkpoint that ``amlit test`` evaluates.

Read without Caffe (``amlit.convert.protobuf_wire``), these fields of ``caffe.proto`` only:

- ``NetParameter``: ``name`` (1), ``layer`` (100, ``LayerParameter``), ``layers`` (2, the older ``V1LayerParameter``);
  field 1 of ``V1LayerParameter`` (a nested pre-2014 V0 layer) is refused: upgrade such files with Caffe's
  ``upgrade_net_proto_binary`` first;
- ``LayerParameter``: ``name`` (1), ``type`` (2, string), ``blobs`` (7); ``V1LayerParameter``: ``name`` (4),
  ``type`` (5, enum), ``blobs`` (6);
- ``BlobProto``: ``shape`` (7, ``BlobShape.dim`` = 1), or the legacy ``num/channels/height/width`` (1-4);
  ``data`` (5, float) or ``double_data`` (8, double), packed or not.

Layers are matched by the names of SphereFace's prototxt (wy1iu/sphereface ``sphereface_model.prototxt``, reused by
happynear/AMSoftmax): stage s = 1..4 has ``conv{s}_1`` (stride 2, weight + bias) + ``relu{s}_1`` (PReLU slopes), then
residual units of ``conv{s}_{k}``/``relu{s}_{k}`` pairs (k = 2, 3, ...; their bias is frozen at 0 in Caffe and must be
0 here), then ``fc5`` (weight + bias). ``fc6`` / ``fc6_l2`` (the class weights, no bias), when present, becomes the
head's weight. Caffe's ``ImageData`` layer feeds OpenCV's BGR images; amlit feeds RGB, so with ``input_order="bgr"``
(the default) the input channels of ``conv1_1`` are reversed. Both normalize (x - 128) / 128 (the AM-Softmax
prototxt's ``mean_value: 128, scale: 0.0078125``), amlit's default ``pixel_mean``/``pixel_std``.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import lightning
import numpy as np
import torch

from amlit.backbones.sphereface import BASE_WIDTHS, UNITS_PER_STAGE, SphereFace
from amlit.checkpoint_io import SafeCheckpointIO
from amlit.convert.protobuf_wire import by_field, repeated_numbers, text
from amlit.data.align import TEMPLATES
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.inference.record import RECORD_KEY, backbone_record

CLASS_WEIGHT_LAYERS = ("fc6", "fc6_l2")  # the AM-Softmax prototxt names it fc6_l2, SphereFace's fc6
# Input sizes whose fc5 input is C x 7 x 6 and C x 7 x 7 (four stride-2 convs: n -> ceil(n / 2)).
CANONICAL_INPUT = {(7, 6): (112, 96), (7, 7): (112, 112)}


@dataclass(frozen=True)
class CaffeLayer:
    name: str
    type: str  # LayerParameter.type, or "V1:<enum number>"
    blobs: list[np.ndarray]  # float32, shaped by BlobShape (or the legacy 4-D num/channels/height/width)


def _blob(data: memoryview) -> np.ndarray:
    fields = by_field(data)
    if 7 in fields:
        shape = tuple(int(d) for d in repeated_numbers(by_field(fields[7][-1][1]).get(1, []), "varint"))
    else:
        shape = tuple(int(repeated_numbers(fields.get(n, []), "varint")[-1:].sum()) for n in (1, 2, 3, 4))
    values = repeated_numbers(fields[5], "<f4") if 5 in fields else repeated_numbers(fields.get(8, []), "<f8")
    if int(np.prod(shape)) != len(values):
        raise BadDataError(f"a blob of shape {shape} holds {len(values)} values; the .caffemodel is damaged")
    return values.astype(np.float32).reshape(shape)


# What `amlit convert caffe` reads, for the message about a file that is not one.
EXPECTED_FILE = (
    "`amlit convert caffe` expects the weights file Caffe saves (a binary NetParameter protobuf, e.g. "
    "sphereface_model.caffemodel), not a .prototxt, a PyTorch or Lightning checkpoint or an archive"
)


def _layers(data: memoryview) -> tuple[list[CaffeLayer], bool]:
    """The layers of a NetParameter message, and whether it has V0 (pre-2014) layers."""
    net = by_field(data)
    layers = []
    for number, name_field, type_field, blob_field in ((100, 1, 2, 7), (2, 4, 5, 6)):
        for _, message in net.get(number, []):
            layer = by_field(message)
            if number == 2 and 1 in layer:
                return layers, True
            kind = text(layer.get(type_field, [])) if number == 100 else f"V1:{layer.get(type_field, [(0, 0)])[-1][1]}"
            blobs = [_blob(blob) for _, blob in layer.get(blob_field, [])]
            layers.append(CaffeLayer(text(layer.get(name_field, [])), kind, blobs))
    return layers, False


def read_caffemodel(path: Path) -> list[CaffeLayer]:
    """Every layer of a ``.caffemodel`` (binary NetParameter) with its blobs, in file order."""
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"{path} not found; expected a binary Caffe model (.caffemodel)")
    try:
        layers, has_v0 = _layers(memoryview(path.read_bytes()))
    except BadDataError as error:  # the wire format's words alone do not say which file, or what it should be
        raise BadDataError(
            f"{path} does not look like a .caffemodel, or is damaged ({error}): {EXPECTED_FILE}"
        ) from None
    if has_v0:
        raise BadDataError(f"{path}: V0 (pre-2014) layers; upgrade it with Caffe's upgrade_net_proto_binary first")
    if not layers:
        raise BadDataError(f"{path} has no layers, so it does not look like a .caffemodel: {EXPECTED_FILE}")
    return layers


def _as_shape(blob: np.ndarray, shape: tuple[int, ...], what: str) -> np.ndarray:
    """``blob`` reshaped to ``shape`` when it holds the same dimensions apart from 1s (legacy 4-D blobs)."""
    if [d for d in blob.shape if d != 1] != [d for d in shape if d != 1]:
        raise BadDataError(f"{what}: blob of shape {blob.shape}; expected {shape}")
    return blob.reshape(shape)


@dataclass(frozen=True)
class Conversion:
    state_dict: dict[str, torch.Tensor]  # FaceVerificationModule keys: backbone.* (+ head.weight)
    depth: int
    width_multiplier: float
    embedding_dim: int
    input_size: tuple[int, int]
    num_classes: int | None  # from fc6, when the model has it
    ignored: list[str]  # layers with blobs that were not converted


def _stage_layout(named: dict[str, CaffeLayer]) -> tuple[int, list[int]]:
    """(depth, residual units per stage) from the conv{s}_{k} names present."""
    units = []
    for stage in range(1, 5):
        ks = sorted(int(m.group(1)) for n in named if (m := re.fullmatch(rf"conv{stage}_(\d+)", n)))
        if not ks or ks != list(range(1, len(ks) + 1)) or len(ks) % 2 == 0:
            raise BadDataError(
                f"conv{stage}_k layers {ks}: expected conv{stage}_1 and pairs conv{stage}_2, conv{stage}_3, ... "
                "as in SphereFace's prototxt"
            )
        units.append((len(ks) - 1) // 2)
    depth = next((d for d, layout in UNITS_PER_STAGE.items() if list(layout) == units), None)
    if depth is None:
        raise BadDataError(f"residual units per stage {units} are not SphereFace-20/36/64 ({dict(UNITS_PER_STAGE)})")
    return depth, units


def convert_layers(
    layers: list[CaffeLayer],
    input_order: Literal["bgr", "rgb"] = "bgr",
    input_size: tuple[int, int] | None = None,
) -> Conversion:
    """Caffe layers -> the state_dict of an amlit SphereFace (``backbone.*``) and, with fc6, the head weight."""
    named = {layer.name: layer for layer in layers}
    depth, units = _stage_layout(named)

    def blobs(name: str, count: int) -> list[np.ndarray]:
        layer = named.get(name)
        if layer is None:
            raise BadDataError(f"layer {name} is missing; a SphereFace-{depth} model has it")
        if len(layer.blobs) < count:
            raise BadDataError(f"layer {name} has {len(layer.blobs)} blobs; expected {count}")
        return layer.blobs

    widths = [blobs(f"conv{s}_1", 2)[0].shape[0] for s in range(1, 5)]
    multiplier = widths[0] / BASE_WIDTHS[0]
    if [max(1, round(w * multiplier)) for w in BASE_WIDTHS] != widths:
        raise BadDataError(f"stage widths {widths} are not SphereFace's 64/128/256/512 times one factor")
    fc5_weight, fc5_bias = blobs("fc5", 2)[:2]
    embedding_dim = fc5_bias.size
    spatial = fc5_weight.size // embedding_dim // widths[-1]
    if input_size is None:
        shape = next((hw for hw in CANONICAL_INPUT if hw[0] * hw[1] == spatial), None)
        if shape is None:
            raise BadDataError(f"fc5 takes {spatial} positions per channel; pass --input_size=[H,W] of the model")
        input_size = CANONICAL_INPUT[shape]
    network = SphereFace(depth, embedding_dim, tuple(input_size), multiplier)
    expected = network.state_dict()
    state: dict[str, torch.Tensor] = {}

    def put(key: str, blob: np.ndarray, what: str) -> None:
        state[key] = torch.from_numpy(_as_shape(blob, tuple(expected[key].shape), what).copy())

    for s, stage_units in enumerate(units, start=1):
        weight, bias = blobs(f"conv{s}_1", 2)[:2]
        if s == 1 and input_order == "bgr":
            weight = weight[:, ::-1]  # BGR input channels -> RGB
        prefix = f"stages.{s - 1}"
        put(f"{prefix}.0.weight", weight, f"conv{s}_1 weight")
        put(f"{prefix}.0.bias", bias, f"conv{s}_1 bias")
        put(f"{prefix}.1.weight", _prelu(named, f"relu{s}_1", widths[s - 1]), f"relu{s}_1 slope")
        for unit in range(stage_units):
            for half, k in (("a", 2 + 2 * unit), ("b", 3 + 2 * unit)):
                conv = blobs(f"conv{s}_{k}", 1)
                if len(conv) > 1 and np.any(conv[1]):
                    raise BadDataError(
                        f"conv{s}_{k} has a non-zero bias; SphereFace freezes the residual biases at 0 (lr_mult 0) "
                        "and amlit's residual convs have none"
                    )
                unit_prefix = f"{prefix}.{2 + unit}"
                put(f"{unit_prefix}.conv_{half}.weight", conv[0], f"conv{s}_{k} weight")
                put(f"{unit_prefix}.act_{half}.weight", _prelu(named, f"relu{s}_{k}", widths[s - 1]), f"relu{s}_{k}")
    put("fc5.weight", fc5_weight, "fc5 weight")
    put("fc5.bias", fc5_bias, "fc5 bias")
    state = {f"backbone.{key}": value for key, value in state.items()}
    num_classes = None
    classes = next((named[n] for n in CLASS_WEIGHT_LAYERS if n in named and named[n].blobs), None)
    if classes is not None:
        weight = classes.blobs[0]
        num_classes = weight.size // embedding_dim
        state["head.weight"] = torch.from_numpy(_as_shape(weight, (num_classes, embedding_dim), classes.name).copy())
    used = {f"conv{s}_{k}" for s, u in enumerate(units, 1) for k in range(1, 2 + 2 * u)}
    used |= {name.replace("conv", "relu", 1) for name in used} | {"fc5"} | ({classes.name} if classes else set())
    ignored = [layer.name for layer in layers if layer.blobs and layer.name not in used]
    return Conversion(state, depth, multiplier, embedding_dim, tuple(input_size), num_classes, ignored)


def _prelu(named: dict[str, CaffeLayer], name: str, channels: int) -> np.ndarray:
    """PReLU slopes (channels,): per channel, or one shared slope (``channel_shared: true``) repeated."""
    layer = named.get(name)
    if layer is None or not layer.blobs:
        raise BadDataError(f"layer {name} (PReLU) is missing or has no slope blob")
    slope = layer.blobs[0].reshape(-1)
    if slope.size == 1:
        return np.repeat(slope, channels)
    if slope.size != channels:
        raise BadDataError(f"{name} has {slope.size} slopes for {channels} channels")
    return slope


def _inference_record(conversion: Conversion, source: dict) -> dict:
    """The record ``amlit embed``/``verify``/``export onnx`` need (``amlit.inference.record``): SphereFace's Caffe
    models take (x - 128) / 128 of 112x96 crops aligned to SphereFace's template (the AM-Softmax authors' too); for
    another input size the template is not known, so raw faces need ``--template`` there."""
    size = tuple(conversion.input_size)
    backbone = SphereFace(conversion.depth, conversion.embedding_dim, size, conversion.width_multiplier)
    template = "sphereface_112x96" if size == TEMPLATES["sphereface_112x96"].size else None
    origin = f"not recorded: converted from the Caffe model {source['source']} (sha256 {source['sha256']})"
    training = {"global_step": None, "manifest": {"train": origin}, "config": None}
    return backbone_record(backbone, alignment_template=template, image_size=size, training=training)


def convert_caffe(
    caffemodel: Path,
    output: Path,
    input_order: Literal["bgr", "rgb"] = "bgr",
    input_size: tuple[int, int] | None = None,
    num_classes: int | None = None,
) -> Path:
    """Convert a SphereFace-20/36/64 Caffe model (.caffemodel) into an amlit checkpoint for ``amlit test``.

    E.g. the AM-Softmax authors' released model: ``amlit test --config <run config> --ckpt_path <output>`` then
    evaluates the Caffe weights.

    Args:
        caffemodel: binary Caffe model (``NetParameter``), new (``layer``) or V1 (``layers``) format.
        output: checkpoint file to write (``.ckpt``).
        input_order: channel order the Caffe model was trained on: ``bgr`` (Caffe's ImageData/OpenCV, the
            default) reverses conv1_1's input channels for amlit's RGB images; ``rgb`` keeps them.
        input_size: (H, W) of the model's input; by default 112x96 or 112x112 as fc5's size says.
        num_classes: class count of the head when the model has no fc6 (a deploy model): the head weight is then
            written as zeros of (num_classes, D), which ``amlit test`` loads but never uses; it must equal the
            class count of the run config's data (e.g. 10516 for the paper's).

    Returns:
        The checkpoint path. The checkpoint also records ``amlit_conversion``: source file, sha256, architecture.
    """
    if input_order not in ("bgr", "rgb"):
        raise ConfigError(f"input_order must be bgr or rgb, got {input_order!r}")
    caffemodel = Path(caffemodel)
    conversion = convert_layers(read_caffemodel(caffemodel), input_order, input_size)
    state = dict(conversion.state_dict)
    classes = conversion.num_classes
    if classes is None:
        if num_classes is None or num_classes < 2:
            raise ConfigError(
                f"{caffemodel} has no fc6 (class weights): pass --num_classes, the class count of the data you test "
                "with (the paper's CASIA-WebFace minus 59 ids: 10516)"
            )
        classes = num_classes
        state["head.weight"] = torch.zeros(classes, conversion.embedding_dim)
    elif num_classes is not None and num_classes != classes:
        raise ConfigError(f"{caffemodel} has {classes} classes (fc6) but --num_classes={num_classes}")
    record = {
        "source": str(caffemodel),
        "sha256": hashlib.sha256(caffemodel.read_bytes()).hexdigest(),
        "depth": conversion.depth,
        "width_multiplier": conversion.width_multiplier,
        "embedding_dim": conversion.embedding_dim,
        "input_size": list(conversion.input_size),
        "input_order": input_order,
        "num_classes": classes,
        "head_from_caffe": conversion.num_classes is not None,
        "ignored_layers": conversion.ignored,
    }
    checkpoint = {
        "state_dict": state,
        "pytorch-lightning_version": lightning.__version__,
        "epoch": 0,
        "global_step": 0,
        "amlit_conversion": record,
        RECORD_KEY: _inference_record(conversion, record),
    }
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    SafeCheckpointIO().save_checkpoint(checkpoint, output)  # with amlit's checksum, as fit writes them
    print(
        f"SphereFace-{conversion.depth} (widths x{conversion.width_multiplier:g}, {conversion.embedding_dim}-d, input "
        f"{conversion.input_size[0]}x{conversion.input_size[1]}, {input_order.upper()} model), head {classes} classes"
        f"{'' if conversion.num_classes else ' (zeros: no fc6 in the model)'}; ignored layers with blobs: "
        f"{', '.join(conversion.ignored) or 'none'}\nwrote {output}; evaluate it with\n  amlit test --config "
        f"<run config> --ckpt_path {output} --model.backbone.init_args.depth={conversion.depth} "
        f"--model.backbone.init_args.embedding_dim={conversion.embedding_dim} "
        f"--model.backbone.init_args.width_multiplier={conversion.width_multiplier:g}"
    )
    return output
