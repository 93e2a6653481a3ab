"""Whether a checkpoint fits the model about to load it: the same weight names and shapes, and the same head (class
and settings) as the run config recorded in its inference record (``amlit.inference.record``) names.

A mismatch found here is one message naming both sides, instead of torch's state-dict traceback, or (a head of
another kind with the same weights: ArcFace and AM-Softmax both hold only ``head.weight``) results that
``amlit test`` records, and ``amlit report`` files, under the config's head rather than the one that was trained.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from torch import nn

from amlit.errors import ConfigError, listed
from amlit.inference.record import RECORD_KEY

# Said wherever a checkpoint is refused for its head: the three ways to name the head it was trained with.
_USE_TRAINING_HEAD = (
    "pass the config it was trained with (config.yaml in its run folder), its head overlay (--config "
    "configs/heads/<head>.yaml) or the same --model.head.* overrides"
)


def check_weights_fit(checkpoint_weights: Mapping[str, Any], model_weights: Mapping[str, Any], strict: bool = True):
    """Refuse (``ConfigError``) checkpoint weights of other shapes than the model's, and with ``strict`` (Lightning's
    ``strict_loading``) weights the model lacks or has but the checkpoint does not (e.g. a Center loss checkpoint's
    ``head.centers`` under an AM-Softmax head)."""
    problems = [
        f"{name} {tuple(value.shape)} vs {tuple(model_weights[name].shape)}"
        for name, value in checkpoint_weights.items()
        if name in model_weights and tuple(value.shape) != tuple(model_weights[name].shape)
    ][:3]
    if strict:
        unexpected = [name for name in checkpoint_weights if name not in model_weights]
        missing = [name for name in model_weights if name not in checkpoint_weights]
        problems += [f"only in the checkpoint: {listed(unexpected, 3)}"] if unexpected else []
        problems += [f"only in the model: {listed(missing, 3)}"] if missing else []
    if problems:
        raise ConfigError(
            f"the checkpoint does not fit this model (checkpoint vs model: {'; '.join(problems)}): use the "
            "model.backbone/model.head settings and the data (its number of classes) it was trained with"
        )


def recorded_head(checkpoint: Mapping[str, Any]) -> tuple[str, dict[str, Any]] | None:
    """(class name, settings) of the head in the run config a checkpoint records; None when it records none (a
    checkpoint of another tool, or written outside the ``amlit`` command line)."""
    record = checkpoint.get(RECORD_KEY)
    training = record.get("training") if isinstance(record, Mapping) else None
    config = training.get("config") if isinstance(training, Mapping) else None
    head = (config.get("model") or {}).get("head") if isinstance(config, Mapping) else None
    if not isinstance(head, Mapping) or not isinstance(head.get("class_path"), str):
        return None
    return head["class_path"].rsplit(".", 1)[-1], dict(head.get("init_args") or {})


def describe_head(name: str, settings: Mapping[str, Any]) -> str:
    """``ArcFace(margin=0.5, scale=64.0, easy_margin=False)``."""
    return f"{name}({', '.join(f'{key}={value}' for key, value in settings.items())})"


def head_changes(checkpoint: Mapping[str, Any], head: nn.Module, resuming: bool) -> dict[str, tuple[Any, Any]]:
    """The settings of ``head`` that differ from those of the head the checkpoint was trained with, as
    ``{name: (checkpoint's, this model's)}``; empty when equal, or when the checkpoint records no head.

    Raises ``ConfigError`` for a head of another class, and, unless ``resuming`` (``fit``, where a run may change
    its margin or scale mid-way), for any difference: ``validate``/``test``/``predict`` record the config's head.
    The class is compared by name: the recorded ``class_path`` is the shortest import path of it.
    """
    recorded = recorded_head(checkpoint)
    if recorded is None:
        return {}
    settings = head.settings() if callable(getattr(head, "settings", None)) else {}  # a MarginHead's
    name, trained = recorded
    ours = describe_head(type(head).__name__, settings)
    theirs = describe_head(name, trained)
    mismatch = f"the checkpoint was trained with the head {theirs}, this config has {ours}"
    if name != type(head).__name__ and resuming:
        raise ConfigError(
            f"{mismatch}: a run cannot change its head class mid-way. To resume it, {_USE_TRAINING_HEAD}; or leave "
            "out --ckpt_path to start a new run"
        )
    changed = {key: (trained[key], new) for key, new in settings.items() if key in trained and trained[key] != new}
    if (changed or name != type(head).__name__) and not resuming:
        raise ConfigError(f"{mismatch}, under which its results would be recorded: {_USE_TRAINING_HEAD}")
    return changed


def check_held_out_identities(checkpoint: Mapping[str, Any], manifest: Mapping[str, Any], seed: Any) -> None:
    """``amlit validate``: refuse (``ConfigError``) a checkpoint trained on other images than the training set this
    config leaves after holding out ``data.val_identities`` (drawn by ``data.seed``, here ``seed``): its
    ``val/heldout`` identities would then include ones the checkpoint was trained on (another ``data.seed`` draws
    others from the same tree, and the class count still fits). Compared by the training listing's sha256 that both
    manifests hold; nothing to compare when the checkpoint records none or this config holds out no identities."""
    record = checkpoint.get(RECORD_KEY)
    training = record.get("training") if isinstance(record, Mapping) else None
    trained = training.get("manifest") if isinstance(training, Mapping) else None
    if (
        not isinstance(trained, Mapping)
        or not trained.get("train_listing_sha256")
        or not manifest.get("val_identities")
    ):
        return
    if trained["train_listing_sha256"] == manifest.get("train_listing_sha256"):
        return
    config = training.get("config")
    data = config.get("data") if isinstance(config, Mapping) else None
    trained_seed = (data.get("init_args") or {}).get("seed", "?") if isinstance(data, Mapping) else "?"

    def described(side: Mapping[str, Any], side_seed: Any) -> str:
        return (
            f"{side.get('train_images')} images of {side.get('train')}, {side.get('val_identities')} identities held "
            f"out by data.seed={side_seed}, listing sha256 {str(side.get('train_listing_sha256'))[:12]}"
        )

    raise ConfigError(
        f"the checkpoint was trained on other images than this config leaves for training (checkpoint: "
        f"{described(trained, trained_seed)}; this config: {described(manifest, seed)}): its val/heldout "
        "identities would include ones the checkpoint was trained on. Validate with the data settings it was trained "
        "with (config.yaml in its run folder: data.seed, data.val_identities, data.exclude_id_lists, the training data)"
    )
