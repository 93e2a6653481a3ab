"""MegaFace challenge 1 inside ``amlit test``: the probe and distractor images to embed (scored by
``amlit.eval.megaface``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from amlit.data.images import IMAGE_EXTENSIONS, scan_images
from amlit.errors import BadDataError
from amlit.eval.curves import Curve
from amlit.eval.far import FarRule
from amlit.eval.megaface import evaluate_megaface, identity_labels, read_image_list, select_identities


def _images_below(root: Path) -> list[str]:
    """Every image file below ``root`` (any depth), as sorted paths relative to it; none is an error."""
    found = scan_images(root).images
    if not found:
        raise BadDataError(f"no images ({', '.join(IMAGE_EXTENSIONS)}) below {root}")
    return found


@dataclass(frozen=True)
class MegaFaceImages:
    """Absolute image paths (the probe and distractor trees share no root): the probes first (``num_probes``, with
    ``labels``), then the distractors."""

    files: list[str]
    num_probes: int
    labels: np.ndarray  # (num_probes,) int64 probe identity

    def evaluate(self, features: torch.Tensor, far_rule: FarRule = "evalroc") -> dict[str, float | Curve]:
        """features (N, D) in ``files`` order -> ``evaluate_megaface`` metrics (rank1, tar@far=1e-6, cmc, roc)."""
        if features.isnan().any():
            raise BadDataError(
                "MegaFace needs every probe and distractor embedded; some were not (limit_test_batches?)"
            )
        probes, distractors = features[: self.num_probes], features[self.num_probes :]
        labels, names = torch.as_tensor(self.labels), self.files[: self.num_probes]
        return evaluate_megaface(probes, labels, distractors, far_rule=far_rule, progress=False, probe_names=names)


def megaface_images(
    probes: Path, distractors: Path, distractor_list: str | Path | None, identities: str | Path | None
) -> MegaFaceImages:
    """List the FaceScrub probes (``<Name>/<image>``, optionally only ``identities``) and the distractors (all
    images below ``distractors``, or the devkit ``distractor_list`` relative to it)."""
    probe_files = _images_below(probes)
    if identities is not None:
        keep = select_identities(probe_files, identities)
        probe_files = [name for name, kept in zip(probe_files, keep, strict=True) if kept]
    labels, _ = identity_labels(probe_files)
    if distractor_list is not None:
        distractor_files = read_image_list(distractor_list)
        missing = [f for f in distractor_files[:1000] if not (distractors / f).is_file()]  # a sample: 1M stats
        if missing:
            raise BadDataError(
                f"images of {distractor_list} are not under {distractors}, e.g. {', '.join(missing[:3])}: point "
                "data.megaface_distractors at the folder the list's paths are relative to"
            )
    else:
        distractor_files = _images_below(distractors)
    probes, distractors = probes.resolve(), distractors.resolve()  # absolute: the two trees share no root
    files = [str(probes / f) for f in probe_files] + [str(distractors / f) for f in distractor_files]
    return MegaFaceImages(files=files, num_probes=len(probe_files), labels=labels)
