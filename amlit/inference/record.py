"""The inference record: what a checkpoint (or an exported model) must say, besides its weights, to be used on new
faces without the training config: the backbone to build, the crop size, the alignment template, the pixel
normalization, the feature, and what the model was trained on.

``FaceVerificationModule.on_save_checkpoint`` stores it under ``amlit_inference`` in every checkpoint; an ONNX
export carries it in its metadata. It holds plain values only (a weights-only load reads it; no code runs), and the
checkpoint's checksum covers it.
"""

from __future__ import annotations

import inspect
from dataclasses import dataclass
from typing import Any

from amlit.data.align import TEMPLATES, AlignTemplate, template_at
from amlit.errors import BadDataError

RECORD_KEY = "amlit_inference"
RECORD_FORMAT = 1
FEATURE = "L2-normalize(f(image) + f(mirror(image)))"  # the AM-Softmax test feature (amlit test, amlit embed)
_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> Any:
    """``value`` as plain, weights-only-loadable data (tuples -> lists), or raise TypeError."""
    if isinstance(value, list | tuple):
        return [_plain(item) for item in value]
    if isinstance(value, _PLAIN):
        return value
    raise TypeError(type(value).__name__)


def backbone_spec(backbone) -> dict:
    """``{"class_path", "init_args", "unrecorded"}``: the backbone's class and every ``__init__`` argument read back
    from the attribute of the same name; arguments without such a (plain) attribute are listed in ``unrecorded``
    (such a checkpoint cannot be rebuilt for inference, and ``amlit embed`` says so)."""
    cls = type(backbone)
    init_args, unrecorded = {}, []
    for name, parameter in inspect.signature(cls.__init__).parameters.items():
        if name == "self" or parameter.kind in (parameter.VAR_POSITIONAL, parameter.VAR_KEYWORD):
            continue
        try:
            init_args[name] = _plain(getattr(backbone, name))
        except (AttributeError, TypeError):
            unrecorded.append(name)
    return {"class_path": f"{cls.__module__}.{cls.__qualname__}", "init_args": init_args, "unrecorded": unrecorded}


def template_record(name: str | None, image_size: tuple[int, int]) -> dict | None:
    """The template the network's input crops follow, at ``image_size`` (``amlit.data.align.template_at``), as plain
    data; None when unknown or not at that size."""
    template = template_at(name, image_size) if name in TEMPLATES else None
    if template is None:
        return None
    label = (
        name if tuple(TEMPLATES[name].size) == tuple(image_size) else f"{name} cut to {image_size[0]}x{image_size[1]}"
    )
    return {"name": label, "size": list(image_size), "points": [list(p) for p in template.points]}


def backbone_record(
    backbone,
    pixel_mean: float = 128.0,
    pixel_std: float = 128.0,
    alignment_template: str | None = None,
    image_size: tuple[int, int] | None = None,
    training: dict | None = None,
) -> dict:
    """The inference record of ``backbone`` fed ``image_size`` crops (default: its ``input_size``) aligned with
    ``alignment_template`` (a ``TEMPLATES`` name), normalized as (x - pixel_mean) / pixel_std."""
    image_size = tuple(image_size or backbone.input_size)
    return {
        "format": RECORD_FORMAT,
        "backbone": backbone_spec(backbone),
        "parameters": int(sum(p.numel() for p in backbone.parameters())),
        "embedding_dim": int(backbone.embedding_dim),
        "input": {
            "image_size": list(image_size),
            "channels": "RGB",
            "pixel_mean": float(pixel_mean),
            "pixel_std": float(pixel_std),
            "alignment_template": template_record(alignment_template, image_size),
        },
        "feature": FEATURE,
        "training": training or {"global_step": None, "manifest": {}, "config": None},
    }


def inference_record(module, trainer) -> dict:
    """The record of a ``FaceVerificationModule`` being trained or tested by ``trainer`` (None outside one)."""
    from amlit.compat import saved_run_config  # Lightning: only where a checkpoint is being written anyway

    datamodule = getattr(trainer, "datamodule", None) if trainer is not None else None
    manifest = datamodule.manifest() if hasattr(datamodule, "manifest") else {}
    training = {
        "global_step": int(trainer.global_step) if trainer is not None else None,
        "manifest": manifest,
        "config": saved_run_config(trainer) if trainer is not None else None,
    }
    return backbone_record(
        module.backbone,
        module.hparams.pixel_mean,
        module.hparams.pixel_std,
        manifest.get("alignment_template"),
        getattr(datamodule, "image_size", None),
        training,
    )


@dataclass(frozen=True)
class InputContract:
    """How a model's input is made: faces aligned to ``template`` at ``image_size`` (H, W), RGB uint8, normalized
    on the way in as (x - pixel_mean) / pixel_std."""

    image_size: tuple[int, int]
    pixel_mean: float
    pixel_std: float
    template: AlignTemplate | None
    template_name: str | None


def input_contract(record: dict, source: str) -> InputContract:
    """The ``InputContract`` of an inference record; a record without the needed fields is refused naming them."""
    try:
        fields = record["input"]
        image_size = (int(fields["image_size"][0]), int(fields["image_size"][1]))
        template = fields.get("alignment_template")
        points = tuple((float(x), float(y)) for x, y in template["points"]) if template else None
        return InputContract(
            image_size=image_size,
            pixel_mean=float(fields["pixel_mean"]),
            pixel_std=float(fields["pixel_std"]),
            template=AlignTemplate(points, image_size) if points else None,
            template_name=template["name"] if template else None,
        )
    except (KeyError, TypeError, ValueError, IndexError) as error:
        raise BadDataError(
            f"{source}: its inference record is incomplete or malformed ({type(error).__name__}: {error}); "
            "use a checkpoint written by amlit fit, or an export of one"
        ) from None


def read_record(checkpoint: dict, source: str) -> dict:
    """The inference record of a loaded checkpoint; a checkpoint written before amlit recorded it is refused."""
    record = checkpoint.get(RECORD_KEY)
    if not isinstance(record, dict):
        raise BadDataError(
            f"{source} does not record how to use it for inference (backbone, crop size, alignment template, "
            "normalization): it was written by an amlit older than this record or by another tool. Checkpoints "
            "that amlit fit writes now carry it; train (or resume) with this version"
        )
    return check_record(record, source)


def check_record(record: Any, source: str) -> dict:
    """``record`` (a checkpoint's, or an ONNX export's metadata) if it is an inference record this amlit reads; one
    of another format (written by another amlit version, whose fields may mean other things) is refused."""
    if not isinstance(record, dict) or record.get("format") != RECORD_FORMAT:
        found = record.get("format") if isinstance(record, dict) else type(record).__name__
        raise BadDataError(
            f"{source}: inference record format {found!r}, this amlit reads {RECORD_FORMAT}: it was written by "
            "another amlit version; use that version, or export (or train) it again with this one"
        )
    return record
