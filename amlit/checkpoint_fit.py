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
