"""The embedded default data set: generated faces (``synthetic.py``) read through ``CasiaDataModule``."""

from __future__ import annotations

from pathlib import Path

from amlit.data.align import TEMPLATES
from amlit.data.casia import CasiaDataModule
from amlit.data.sources import ImageFolder
from amlit.data.synthetic import SyntheticSpec, blufr_config_for, generate, megaface_distractors_for


class SyntheticFacesDataModule(CasiaDataModule):
    """Generates (once, cached under ``root``) a CASIA-layout training tree and an LFW-layout test tree with
    ``pairs.txt``, then behaves exactly as ``CasiaDataModule`` on them.

    Args:
        root: cache folder for generated trees (one sub-folder per parameter set).
        train_identities, images_per_identity: size of the training tree.
        test_identities, test_images_per_identity, pairs_per_fold: size of the LFW-style test set (10 folds).
        data_seed: seed of the generator.
        image_size: (H, W) of the crops.
        blufr: also test with a BLUFR-style protocol generated for the test tree (10 trials, LFW's proportions).
        megaface_distractors: also test MegaFace-style, the test tree's identities as probes against this many
            generated one-image distractor identities (0: no MegaFace).
        **kwargs: the remaining ``CasiaDataModule`` arguments (batch_size, val_identities, ...).
    """

    def __init__(
        self,
        root: str | Path = "data/synthetic",
        train_identities: int = 200,
        images_per_identity: int = 24,
        test_identities: int = 120,
        test_images_per_identity: int = 6,
        pairs_per_fold: int = 60,
        data_seed: int = 0,
        image_size: tuple[int, int] = (112, 96),
        blufr: bool = True,
        megaface_distractors: int = 1000,
        **kwargs,
    ) -> None:
        spec = SyntheticSpec(
            train_identities=train_identities,
            images_per_identity=images_per_identity,
            test_identities=test_identities,
            test_images_per_identity=test_images_per_identity,
            pairs_per_fold=pairs_per_fold,
            image_size=(int(image_size[0]), int(image_size[1])),
            seed=data_seed,
        )
        tree = generate(root, spec)
        super().__init__(
            train=ImageFolder(tree / "casia"),
            lfw_root=tree / "lfw",
            lfw_pairs=tree / "lfw" / "pairs.txt",
            blufr_config=blufr_config_for(tree, seed=data_seed) if blufr else None,
            megaface_probes=tree / "lfw" if megaface_distractors else None,
            megaface_distractors=(
                megaface_distractors_for(tree, megaface_distractors, spec.image_size, seed=data_seed)
                if megaface_distractors
                else None
            ),
            image_size=image_size,
            # The faces are drawn on the SphereFace template (insightface's when 112x112 wide); other sizes: none.
            alignment_template=kwargs.pop("alignment_template", _template_of_size(spec.image_size)),
            **kwargs,
        )


def _template_of_size(image_size: tuple[int, int]) -> str | None:
    return next((name for name, template in TEMPLATES.items() if template.size == tuple(image_size)), None)
