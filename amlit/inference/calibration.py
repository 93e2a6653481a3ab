"""Calibrated thresholds of a model: what ``amlit test`` measured (``threshold@far=<FAR>`` per test set, from
``amlit.eval.far.calibrated_thresholds``), carried by model cards and ONNX exports, and chosen by ``amlit verify``.

A threshold belongs to the weights it was measured with: each calibration names their ``weights_sha256``, and one
measured on other weights is refused, never used.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from amlit import keys
from amlit.errors import BadDataError, ConfigError, MissingDataError
from amlit.eval.far import CALIBRATION_FARS, CALIBRATION_RULE

CARD_JSON = "model_card.json"
ACCEPT_RULE = (
    f"a pair is the same person when its cosine is >= the threshold; the threshold at a FAR is the {CALIBRATION_RULE} "
    "operating point of the test set: the k-th largest impostor cosine, k = round(FAR x impostor pairs), so exactly "
    f"k of its impostor pairs pass (a FAR of {', '.join(map(keys.far_name, CALIBRATION_FARS))} is calibrated where the "
    "test set has at least 1/FAR impostor pairs)"
)


def calibration_from_metrics(metrics: dict[str, float], stage: str = "test") -> dict[str, dict]:
    """``{test set: {"num_impostors", "thresholds": {FAR name: cosine}[, "threshold_std": {...}]}}`` from flat
    metric keys ``<stage>/<set>/threshold@far=<FAR>`` (and ``..._std`` over BLUFR's trials), ``<stage>/<set>/
    num_impostors``; sets without a resolved FAR are left out."""
    sets: dict[str, dict] = {}
    for key, value in metrics.items():
        parts = key.split("/")
        if len(parts) != 3 or parts[0] != stage:
            continue
        _, name, metric = parts
        entry = sets.setdefault(name, {"num_impostors": None, "thresholds": {}})
        if metric == keys.NUM_IMPOSTORS:
            entry["num_impostors"] = int(value)
        elif metric.startswith(keys.THRESHOLD_PREFIX):
            far = metric.removeprefix(keys.THRESHOLD_PREFIX)
            if far.endswith("_std"):
                entry.setdefault("threshold_std", {})[far.removesuffix("_std")] = float(value)
            else:
                entry["thresholds"][far] = float(value)
    return {name: entry for name, entry in sets.items() if entry["thresholds"]}


@dataclass(frozen=True)
class Threshold:
    """The cosine threshold chosen for a FAR, and where it comes from."""

    far: float
    value: float
    test_set: str
    num_impostors: int
    origin: str  # e.g. "runs/demo/results/model_card.json (amlit test of runs/demo/checkpoints/last.ckpt)"

    def describe(self) -> str:
        return (
            f"threshold {self.value:.6f} at FAR {keys.far_name(self.far)}: calibrated by amlit test on test set "
            f"{self.test_set!r} ({self.num_impostors:,} impostor pairs), from {self.origin}"
        )


def read_card(path: str | Path) -> dict:
    path = Path(path)
    if not path.is_file():
        raise MissingDataError(f"calibration not found: {path}; pass the model_card.json that amlit test wrote")
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise BadDataError(f"{path} is not a model card (JSON): {error}") from None
    if not isinstance(card, dict) or "weights_sha256" not in card:
        raise BadDataError(f"{path} is not an amlit model_card.json (no weights_sha256)")
    return card


def find_calibration(model, calibration: str | Path | None) -> tuple[dict, str] | None:
    """(model card, where it is from) with this model's calibration: ``calibration`` if given, else the card inside
    an ONNX export, else a ``model_card.json`` beside the model file; None when there is none. A card measured on
    other weights is refused (given) or passed over (found beside the model)."""
    if calibration is not None:
        card = read_card(calibration)
        if card["weights_sha256"] != model.weights_sha256:
            raise ConfigError(
                f"{calibration} was measured on other weights ({card['weights_sha256'][:12]}...) than {model.source} "
                f"({model.weights_sha256[:12]}...): its thresholds do not apply; use the model card of this model"
            )
        if not card.get("calibration"):
            raise ConfigError(
                f"{calibration} holds no calibrated thresholds (calibration: null): the amlit test that wrote it had "
                "no test set with 1/FAR impostor pairs for any FAR of "
                f"{', '.join(map(keys.far_name, CALIBRATION_FARS))}, or it is the card of an export made without "
                "--calibration; pass the model_card.json of an amlit test on a larger set (BLUFR, MegaFace)"
            )
        return card, str(calibration)
    if model.model_card and model.model_card.get("calibration"):
        return model.model_card, f"the model card inside {model.source}"
    beside = Path(model.source).with_name(CARD_JSON)
    if beside.is_file():
        card = read_card(beside)
        if card["weights_sha256"] == model.weights_sha256 and card.get("calibration"):
            return card, str(beside)
    return None


def calibration_sets(card: dict, origin: str) -> dict[str, dict]:
    """The ``calibration.sets`` of a model card, each checked to be ``{"num_impostors": int, "thresholds": {FAR
    name: cosine}}`` as ``calibration_from_metrics`` writes them (a card edited by hand can be anything)."""
    calibration = card.get("calibration") or {}
    sets = calibration.get("sets") if isinstance(calibration, dict) else None
    expected = '{"sets": {<test set>: {"num_impostors": <int>, "thresholds": {"1e-3": <cosine>, ...}}}}'
    if not isinstance(sets, dict):
        raise BadDataError(f"{origin}: its calibration is not {expected}")
    for name, entry in sets.items():
        thresholds = entry.get("thresholds") if isinstance(entry, dict) else None
        if (
            not isinstance(thresholds, dict)
            or not all(isinstance(v, int | float) and not isinstance(v, bool) for v in thresholds.values())
            or not isinstance(entry.get("num_impostors", "missing"), int | None)
        ):
            raise BadDataError(f"{origin}: its calibration of test set {name!r} is not as {expected}")
    return sets


def calibrated(sets: dict[str, dict]) -> str:
    """The FARs each test set of a calibration has, for messages."""
    return "; ".join(f"{k}: FAR {', '.join(v['thresholds'])}" for k, v in sets.items()) or "none"


def choose_threshold(model, far: float, calibration: str | Path | None = None, test_set: str | None = None):
    """The calibrated threshold of ``model`` at ``far``: from ``test_set``, else from the test set with the most
    impostor pairs behind that FAR. Refuses, saying what to do, when the model has no calibration or none at that
    FAR; a threshold is never made up."""
    found = find_calibration(model, calibration)
    if found is None:
        raise ConfigError(
            f"{model.source} has no calibrated thresholds, and amlit does not invent one: run `amlit test` with this "
            "checkpoint (it writes model_card.json beside results.json) and pass --calibration=<that model_card.json>"
            ", or use an ONNX export made with --calibration"
        )
    card, origin = found
    sets = calibration_sets(card, origin)
    name = keys.far_name(far)
    if test_set is not None and test_set not in sets:
        raise ConfigError(f"--test_set={test_set}: {origin} calibrates {', '.join(sets) or 'no test set'}")
    candidates = {k: v for k, v in sets.items() if name in v["thresholds"] and test_set in (None, k)}
    if not candidates and name not in map(keys.far_name, CALIBRATION_FARS):
        raise ConfigError(
            f"no calibrated threshold at FAR {name}: amlit test calibrates FAR "
            f"{', '.join(map(keys.far_name, CALIBRATION_FARS))} only (where a test set has at least 1/FAR impostor "
            f"pairs; {origin} has {calibrated(sets)}); choose one of those"
        )
    if not candidates:
        raise ConfigError(
            f"no calibrated threshold at FAR {name} in {origin} (calibrated: {calibrated(sets)}): a FAR needs a test "
            "set with at least 1/FAR impostor pairs; choose one of those, or test on a larger set (BLUFR, MegaFace)"
        )
    chosen = max(candidates, key=lambda k: candidates[k]["num_impostors"] or 0)
    entry = candidates[chosen]
    measured = card.get("source", {}).get("checkpoint")
    where = f"{origin} (amlit test of {measured})" if measured else origin
    return Threshold(far, entry["thresholds"][name], chosen, int(entry["num_impostors"] or 0), where)
