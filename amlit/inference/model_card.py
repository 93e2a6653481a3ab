"""Model cards: ``model_card.md`` (for people) and ``model_card.json`` (for tools: ``amlit verify`` reads its
calibrated thresholds), written by ``amlit test`` beside ``results.json`` and by ``amlit export onnx`` beside the
export. They say what the model is, what it takes as input, what it was trained on, how it scored and which cosine
to use at which FAR, under what license, and what it is not for.
"""

from __future__ import annotations

import json
from pathlib import Path

from amlit.data.images import write_atomically
from amlit.inference.calibration import ACCEPT_RULE, CARD_JSON, calibration_from_metrics

CARD_MARKDOWN = "model_card.md"
# Table 1 of the AM-Softmax paper: its columns, as amlit test's keys.
TABLE1_COLUMNS = (
    ("LFW accuracy (10 folds)", "test/lfw/acc"),
    ("BLUFR VR@FAR=0.01% (mean - std)", "test/blufr/vr@far=1e-4_mean_minus_std"),
    ("BLUFR VR@FAR=0.1% (mean - std)", "test/blufr/vr@far=1e-3_mean_minus_std"),
    ("BLUFR DIR@FAR=1% rank 1 (mean - std)", "test/blufr/dir@far=1e-2,rank=1_mean_minus_std"),
    ("MegaFace rank-1 identification", "test/megaface/rank1"),
    ("MegaFace TAR@FAR=1e-6", "test/megaface/tar@far=1e-6"),
)
INTENDED_USE = (
    "1:1 face verification (are two face images the same person?) and embeddings for face search/clustering on "
    "face images aligned as described under Input; research on margin-based face recognition losses."
)
KNOWN_LIMITS = (
    "Faces must be aligned with the template above at the input size (5-point landmarks); other crops lose "
    "accuracy silently.",
    "Calibrated thresholds hold for faces like those of the test set they were measured on; another population, "
    "image quality or capture setting gives another false accept rate: calibrate on your own impostor pairs.",
    "A FAR is calibrated only where the test set has at least 1/FAR impostor pairs; lower FARs are unmeasured.",
    "Accuracy across demographic groups, ages, poses and occlusions was not measured by amlit.",
    "Not for decisions about people without human review, nor for surveillance; check the training data's terms.",
)


def table1(metrics: dict[str, float]) -> dict[str, float]:
    """The Table 1 columns ``metrics`` has (label -> value)."""
    return {label: float(metrics[key]) for label, key in TABLE1_COLUMNS if key in metrics}


def build_card(
    record: dict,
    weights_sha256: str,
    source: dict,
    evaluation: dict | None = None,
    calibration: dict | None = None,
    license: str | None = None,
    export: dict | None = None,
) -> dict:
    """The model card as plain JSON data: ``record`` (``amlit.inference.record``), the weights' identity, where the
    card comes from (``source``: checkpoint, results), the last test's ``evaluation`` (``table1`` and every scalar
    metric), ``calibration`` ({test set: thresholds}, ``calibration_from_metrics``), the license, the export."""
    manifest = record.get("training", {}).get("manifest") or {}
    limits = list(KNOWN_LIMITS)
    if "synthetic" in str(manifest.get("train", "")):
        limits.insert(0, "Trained on amlit's generated demo faces: a pipeline check, not a model for real faces.")
    return {
        "weights_sha256": weights_sha256,
        "source": source,
        "architecture": record.get("backbone"),
        "parameters": record.get("parameters"),
        "embedding_dim": record.get("embedding_dim"),
        "input": record.get("input"),
        "feature": record.get("feature"),
        "training": {
            "global_step": record.get("training", {}).get("global_step"),
            "manifest": manifest,
            "config": record.get("training", {}).get("config"),
        },
        "evaluation": evaluation,
        "calibration": {"rule": ACCEPT_RULE, "sets": calibration} if calibration else None,
        "license": license,
        "intended_use": INTENDED_USE,
        "known_limits": limits,
        "export": export,
    }


def card_from_test(module, trainer, metrics: dict[str, float], results: Path, license: str | None) -> dict:
    """The card of a model just tested by ``amlit test`` (``ResultsWriter``): the tested checkpoint's own record and
    weights (what ``amlit embed``/``verify`` will load), or the module's when it was tested without a checkpoint."""
    from amlit.inference.network import backbone_state, weights_digest
    from amlit.inference.record import RECORD_KEY, inference_record

    checkpoint = str(trainer.ckpt_path) if trainer.ckpt_path else None
    record, tensors = inference_record(module, trainer), module.backbone.state_dict()
    if checkpoint is not None:
        from amlit.checkpoint_io import load_verified

        loaded = load_verified(checkpoint)
        record, tensors = loaded.get(RECORD_KEY) or record, backbone_state(loaded["state_dict"])
    return build_card(
        record,
        weights_digest(tensors),
        source={"checkpoint": checkpoint, "results": str(results)},
        evaluation={"table1": table1(metrics), "metrics": metrics},
        calibration=calibration_from_metrics(metrics) or None,
        license=license,
    )


def _value(value) -> str:
    return f"{value:.4f}" if isinstance(value, float) else str(value)


def render_markdown(card: dict) -> str:
    """``model_card.md``: the card's sections in prose and tables."""
    architecture = card.get("architecture") or {}
    fields = card.get("input") or {}
    template = fields.get("alignment_template")
    training = card.get("training") or {}
    manifest = training.get("manifest") or {}
    lines = ["# Model card", ""]
    lines += [
        "## Model",
        "",
        f"- Architecture: `{architecture.get('class_path')}` {json.dumps(architecture.get('init_args', {}))}",
        f"- Parameters (backbone): {card.get('parameters'):,}" if card.get("parameters") else "- Parameters: ?",
        f"- Feature: {card.get('embedding_dim')}-d, {card.get('feature')}, compared by cosine",
        f"- Weights sha256: `{card.get('weights_sha256')}`",
        f"- From: {json.dumps(card.get('source'))}",
        "",
        "## Input",
        "",
        f"- Aligned RGB face crops of {'x'.join(map(str, fields.get('image_size', ['?', '?'])))} (HxW) pixels",
        (
            f"- Alignment template: {template['name']}: five points (x, y; 0-based pixels; left eye, right eye, nose, "
            f"left and right mouth corner) at {template['points']}"
            if template
            else "- Alignment template: not recorded"
        ),
        f"- Normalization: (x - {fields.get('pixel_mean')}) / {fields.get('pixel_std')} per channel",
        "",
        "## Training data",
        "",
        f"- Source: {manifest.get('train')}",
        f"- Identities: {manifest.get('identities')}, trained classes: {manifest.get('num_classes')}, "
        f"images: {manifest.get('train_images')}, held out for validation: {manifest.get('val_identities')}",
        f"- Removed identities: {len(manifest.get('removed_identities') or [])}, from the lists "
        f"{json.dumps(manifest.get('exclude_id_list_sha256') or manifest.get('exclude_id_lists'))} (path: sha256)",
        f"- Listing checksum (sha256 of identity, image name): `{manifest.get('train_listing_sha256')}`",
        f"- Training steps: {training.get('global_step')}; the full training config is in model_card.json",
        "",
    ]
    evaluation = card.get("evaluation") or {}
    if evaluation.get("table1"):
        lines += ["## Evaluation (last amlit test)", "", "| Table 1 column | value |", "| --- | --- |"]
        lines += [f"| {label} | {_value(value)} |" for label, value in evaluation["table1"].items()]
        lines += [""]
    calibration = card.get("calibration")
    lines += ["## Calibrated thresholds", ""]
    if calibration:
        lines += [f"Rule: {calibration['rule']}.", "", "| test set | impostor pairs | FAR | cosine threshold |"]
        lines += ["| --- | --- | --- | --- |"]
        for name, entry in calibration["sets"].items():
            for far, threshold in entry["thresholds"].items():
                lines += [f"| {name} | {entry['num_impostors']:,} | {far} | {threshold:.6f} |"]
        lines += ["", "`amlit verify --far=<FAR> --calibration=model_card.json` uses these.", ""]
    else:
        lines += ["None: run `amlit test` on this checkpoint (no threshold is made up).", ""]
    export = card.get("export")
    if export:
        lines += ["## Export", "", *[f"- {key}: {_value(value)}" for key, value in export.items()], ""]
    lines += ["## License", "", card.get("license") or "Not stated (set it in the config: model_license).", ""]
    lines += ["## Intended use", "", card["intended_use"], "", "## Known limits", ""]
    lines += [f"- {limit}" for limit in card["known_limits"]]
    return "\n".join(lines) + "\n"


def write_card(folder: str | Path, card: dict) -> tuple[Path, Path]:
    """Write ``model_card.json`` and ``model_card.md`` into ``folder`` (atomically); returns their paths."""
    folder = Path(folder)
    json_path, markdown_path = folder / CARD_JSON, folder / CARD_MARKDOWN
    write_atomically(json_path, (json.dumps(card, indent=1, default=str) + "\n").encode())
    write_atomically(markdown_path, render_markdown(card).encode())
    return json_path, markdown_path
