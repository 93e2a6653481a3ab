"""The AM-Softmax paper's published numbers, and which of its rows a run's head reproduces.

Wang, Liu, Liu, Cheng: "Additive Margin Softmax for Face Verification", arXiv:1801.05599 (IEEE Signal Processing
Letters 2018), Table 1 ("Performance on modified ResNet-20 with various loss functions") and Table 2 ("Effect of
Overlap Removal on modified ResNet-20"), in percent, transcribed from the arXiv text. Table 1's note: Center Loss
and NormFace were trained on ResNet-28, every other row on SphereFace-20; all on CASIA-WebFace minus the 59
identities that overlap LFW and MegaFace set 1.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from amlit.eval.blufr import OFFICIAL_TRIALS

CITATION = "Wang et al., Additive Margin Softmax for Face Verification, arXiv:1801.05599"


@dataclass(frozen=True)
class Protocol:
    """How the paper measured a column, as ``results.json`` records it: the count amlit test records under ``key``
    (``test/<set>/...``), or the data setting ``key`` (``data.<name>``) of the run config that results.json holds,
    equals ``expected``. A run measured otherwise (fewer LFW pairs, SphereFace's pair protocol, a generated BLUFR
    list or fewer trials, another FAR rule, a MegaFace subset) gets no paper number beside it: a difference to the
    paper would compare two different measurements."""

    key: str  # a count amlit test records, e.g. test/lfw/num_pairs, or a data setting, e.g. data.far_rule
    expected: int | str
    what: str  # what the count counts or the setting sets, for the report's notes


DATA_SETTING = "data."  # Protocol.key prefix of the data settings (as the CLI spells them: --data.far_rule)

LFW_PAIRS = Protocol("test/lfw/num_pairs", 6000, "LFW pairs scored")
# The paper scores LFW with AM-Softmax's feature (flip-sum, L2-normalized; amlit.eval.verification), not
# SphereFace's evaluation.m (concatenated features, the training folds' mean subtracted), which gives other accuracies.
LFW_FLIP_SUM = Protocol(f"{DATA_SETTING}pair_protocol", "amsoftmax", "pair protocol")
# The official blufr_lfw_config.mat (BLUFR toolkit v1.0): its 10 trials have 44,003,474 to 52,612,506 impostor
# pairs; amlit records the smallest trial's count (amlit.eval.blufr.summarize_calibration). Any other list differs.
BLUFR_OFFICIAL = Protocol("test/blufr/num_impostors", 44_003_474, "impostor pairs in the smallest BLUFR trial")
# ... and the paper's BLUFR figures are mean - std over all 10 of them: over fewer (or more) trials the std differs.
BLUFR_TRIALS = Protocol("test/blufr/num_trials", OFFICIAL_TRIALS, "BLUFR trials")
# The paper's BLUFR figures are the toolkit's EvalROC.m / OpenSetROC.m operating points (amlit.eval.far's evalroc);
# the other rules move VR and DIR by the genuine scores between two adjacent impostor scores and by how FAR x N is
# rounded, visible at BLUFR's size (DIR's FAR 1% rests on a few thousand impostor probes). No other column depends
# on the rule: LFW accuracy has no FAR, and at the 1M distractors MegaFace is compared at, FAR x N (the number of
# probes) is an integer, where the rules differ only by genuine scores between two adjacent ones of 3.5e9 impostor
# scores (amlit.eval.megaface). The paper's MegaFace TAR is the devkit's ROC read by happynear's draw_curve.m
# (interpolated), not EvalROC: requiring evalroc there would be wrong.
BLUFR_EVALROC = Protocol(f"{DATA_SETTING}far_rule", "evalroc", "FAR rule")
MEGAFACE_1M = Protocol("test/megaface/num_distractors", 1_000_000, "MegaFace distractors")


@dataclass(frozen=True)
class Column:
    """A column of Table 1, the amlit metric key (``results.json``) that measures it, and how the paper did."""

    name: str  # short name, used in CSV column names
    title: str  # as the paper's header says
    key: str
    protocols: tuple[Protocol, ...]  # all must hold for the paper's number to stand beside the run's


LFW = (LFW_PAIRS, LFW_FLIP_SUM)
BLUFR = (BLUFR_OFFICIAL, BLUFR_TRIALS, BLUFR_EVALROC)
MEGAFACE = (MEGAFACE_1M,)
# BLUFR numbers are mean - std over the 10 trials (the toolkit's reported figure; amlit.eval.blufr).
TABLE1_COLUMNS = (
    Column("lfw", "LFW 6,000 pairs", "test/lfw/acc", LFW),
    Column("blufr_vr_1e-4", "BLUFR VR@FAR=0.01%", "test/blufr/vr@far=1e-4_mean_minus_std", BLUFR),
    Column("blufr_vr_1e-3", "BLUFR VR@FAR=0.1%", "test/blufr/vr@far=1e-3_mean_minus_std", BLUFR),
    Column("blufr_dir_1e-2", "BLUFR DIR@FAR=1%", "test/blufr/dir@far=1e-2,rank=1_mean_minus_std", BLUFR),
    Column("megaface_rank1", "MegaFace Rank1@1e6", "test/megaface/rank1", MEGAFACE),
    Column("megaface_vr", "MegaFace VR@FAR=1e-6", "test/megaface/tar@far=1e-6", MEGAFACE),
)
TABLE2_COLUMNS = TABLE1_COLUMNS[4:]  # MegaFace Rank1, MegaFace VR


@dataclass(frozen=True)
class PaperRow:
    key: str  # amlit's name of the row (``paper_row`` returns it)
    loss: str  # "Loss Function" as printed
    margin: str  # "m" as printed
    values: tuple[float, ...]  # percent, in TABLE1_COLUMNS order


TABLE1 = (
    PaperRow("softmax", "Softmax", "-", (97.08, 60.26, 78.26, 50.85, 45.26, 50.12)),
    PaperRow("softmax_dropout", "Softmax+75% dropout", "-", (98.62, 77.64, 90.91, 63.72, 57.32, 65.58)),
    PaperRow("center_loss", "Center Loss", "-", (99.00, 83.30, 94.50, 65.46, 63.38, 75.68)),
    PaperRow("normface", "NormFace", "-", (98.98, 88.15, 96.16, 75.22, 65.03, 75.88)),
    PaperRow("a_softmax", "A-Softmax", "~1.5", (99.08, 91.26, 97.06, 81.93, 67.41, 78.19)),
    PaperRow("am_softmax_0.25", "AM-Softmax", "0.25", (99.13, 91.97, 97.13, 81.42, 70.81, 83.01)),
    PaperRow("am_softmax_0.3", "AM-Softmax", "0.3", (99.08, 93.18, 97.56, 84.02, 72.01, 83.29)),
    PaperRow("am_softmax_0.35", "AM-Softmax", "0.35", (98.98, 93.51, 97.69, 84.82, 72.47, 84.44)),
    PaperRow("am_softmax_0.4", "AM-Softmax", "0.4", (99.17, 93.60, 97.71, 84.51, 72.44, 83.50)),
    PaperRow("am_softmax_0.45", "AM-Softmax", "0.45", (99.03, 93.44, 97.60, 84.59, 72.22, 83.00)),
    PaperRow("am_softmax_0.5", "AM-Softmax", "0.5", (99.10, 92.33, 97.28, 83.38, 71.56, 82.49)),
    PaperRow("am_softmax_wo_fn_0.35", "AM-Softmax w/o FN", "0.35", (99.08, 93.86, 97.63, 87.58, 70.71, 82.66)),
    PaperRow("am_softmax_wo_fn_0.4", "AM-Softmax w/o FN", "0.4", (99.12, 94.48, 97.96, 87.31, 70.96, 83.11)),
)
TABLE1_BY_KEY = {row.key: row for row in TABLE1}

# Table 2: AM-Softmax (m = 0.35) trained with and without the overlap removal; MegaFace Rank1 and VR, percent.
TABLE2 = {True: (72.47, 84.44), False: (75.23, 87.06)}  # overlap removed? -> (Rank1, VR@FAR=1e-6)
TABLE2_ROW = "am_softmax_0.35"

AM_SOFTMAX_MARGINS = (0.25, 0.3, 0.35, 0.4, 0.45, 0.5)
PAPER_SCALE = 30.0
SPHEREFACE_MARGIN = 4  # SphereFace's m = 4, lambda annealed to 5: "approximately m = 1.5" (the paper, Sec. 2)


def _head_parts(head: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """(class name, init_args) of a head entry of a resolved config (``{class_path, init_args}``)."""
    return str(head.get("class_path", "")).rsplit(".", 1)[-1], dict(head.get("init_args") or {})


def paper_row(head: Mapping[str, Any]) -> str | None:
    """The Table 1 row (``PaperRow.key``) that a head of a resolved run config reproduces, or None (e.g. ArcFace,
    or settings the paper did not run, such as AM-Softmax at s = 64)."""
    name, args = _head_parts(head)
    if name == "Softmax":
        dropout = float(args.get("dropout", 0.0))
        return {0.0: "softmax", 0.75: "softmax_dropout"}.get(dropout)
    if name == "CenterLoss":
        return "center_loss"
    if name == "ASoftmax":
        return "a_softmax" if int(args.get("margin", SPHEREFACE_MARGIN)) == SPHEREFACE_MARGIN else None
    if name != "AMSoftmax":
        return None
    margin = float(args.get("margin", 0.35))
    if not args.get("feature_normalization", True):
        return f"am_softmax_wo_fn_{margin:g}" if margin in (0.35, 0.4) else None
    if float(args.get("scale", PAPER_SCALE)) != PAPER_SCALE:
        return None
    if margin == 0.0:
        return "normface"
    return f"am_softmax_{margin:g}" if margin in AM_SOFTMAX_MARGINS else None


def describe_head(head: Mapping[str, Any]) -> tuple[str, str, str]:
    """(head, m, s) as a table shows them: e.g. ("AM-Softmax", "0.35", "30"), ("AM-Softmax w/o FN", "0.4", "|f|")."""
    name, args = _head_parts(head)

    def number(key: str, default: float) -> str:
        return f"{float(args.get(key, default)):g}"

    if name == "Softmax":
        dropout = float(args.get("dropout", 0.0))
        return ("Softmax" + (f"+{dropout:.0%} dropout" if dropout else ""), "-", "-")
    if name == "CenterLoss":
        return ("Center Loss", "-", "-")
    if name == "ASoftmax":
        return ("A-Softmax", f"{int(args.get('margin', SPHEREFACE_MARGIN))} (lambda>={number('lambda_min', 5)})", "|f|")
    if name == "AMSoftmax":
        ramp = f", ramp {float(args['margin_ramp']):g}/step" if args.get("margin_ramp") else ""
        if not args.get("feature_normalization", True):
            return ("AM-Softmax w/o FN", number("margin", 0.35) + ramp, "|f|")
        margin = float(args.get("margin", 0.35))
        return ("NormFace" if margin == 0 else "AM-Softmax", number("margin", 0.35) + ramp, number("scale", 30))
    if name == "ArcFace":
        return ("ArcFace", number("margin", 0.5) + " rad", number("scale", 64))
    if name == "CombinedMargin":
        parts = (number("multiplicative_margin", 1), number("angular_margin", 0.3), number("cosine_margin", 0.2))
        return ("Combined margin", "(" + ", ".join(parts) + ")", number("scale", 64))
    return (name or "?", "?", "?")
