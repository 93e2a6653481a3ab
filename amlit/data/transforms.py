"""CPU augmentation for the JPEG-folder path (albumentations): uint8 (H, W, 3) RGB in, uint8 (H, W, 3) RGB out.

The paper's only augmentation is the horizontal mirror (Wang et al. 2018, Sec. 4.1), and amlit already applies it
on the device (``FaceVerificationModule.on_after_batch_transfer`` flips a random half of every training batch), as
it does normalization. So by default nothing runs here; ``TrainAugment`` offers further augmentations for users who
want them, each off unless its probability is set, and a CPU mirror (``mirror``) only for models that do not flip
on the device. With ``FaceVerificationModule`` leave ``mirror=False``: a second random flip is wasted work (the XOR
of two fair coins is still a fair coin, so the result is the same in distribution).

albumentations is imported when a pipeline is built, not with this module (its import takes seconds).
"""

from __future__ import annotations

import os

import cv2
import numpy as np

from amlit.errors import ConfigError


def to_rgb(image: np.ndarray) -> np.ndarray:
    """The evaluation transform: gray (H, W) or (H, W, 1) -> (H, W, 3) by replicating the channel; RGB unchanged.

    Evaluation needs nothing else on the CPU: the mirror-sum feature and normalization are computed on the device.
    """
    if image.ndim == 2 or image.shape[2] == 1:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2RGB)
    return image


class TrainAugment:
    """Training augmentation of aligned faces, each transform off by default (the paper uses none on the CPU).

    Transforms run in this order: mirror, affine, brightness/contrast, grayscale, JPEG re-compression.

    Args:
        mirror: random horizontal flip with probability 0.5 on the CPU. Keep it off with
            ``FaceVerificationModule``, which mirrors on the device.
        affine_p: probability of a small random similarity transform (keep it small: the crops are aligned).
        max_rotate: largest rotation in degrees (either direction).
        max_shift: largest translation as a fraction of the width/height.
        max_scale: largest relative zoom, e.g. 0.05 -> scale in [0.95, 1.05].
        brightness_contrast_p: probability of a random brightness/contrast change.
        brightness_limit: largest brightness change as a fraction of the range.
        contrast_limit: largest contrast change (factor 1 ± limit).
        grayscale_p: probability of converting to gray (kept 3-channel).
        jpeg_p: probability of re-compressing as JPEG.
        jpeg_quality: (lowest, highest) JPEG quality of that re-compression.
        seed: seed of the random choices (None: random). Each DataLoader worker continues from its own seed
            (derived from ``seed`` and the worker id, or from torch's worker seed when ``seed`` is None), so
            workers do not repeat each other's augmentations.
    """

    def __init__(
        self,
        mirror: bool = False,
        affine_p: float = 0.0,
        max_rotate: float = 10.0,
        max_shift: float = 0.05,
        max_scale: float = 0.05,
        brightness_contrast_p: float = 0.0,
        brightness_limit: float = 0.2,
        contrast_limit: float = 0.2,
        grayscale_p: float = 0.0,
        jpeg_p: float = 0.0,
        jpeg_quality: tuple[int, int] = (40, 95),
        seed: int | None = None,
    ) -> None:
        probabilities = {
            "affine_p": affine_p,
            "brightness_contrast_p": brightness_contrast_p,
            "grayscale_p": grayscale_p,
            "jpeg_p": jpeg_p,
        }
        for name, value in probabilities.items():
            if not 0.0 <= value <= 1.0:
                raise ConfigError(f"augment.{name}={value} is not a probability: set a value in [0, 1]")
        if not 1 <= jpeg_quality[0] <= jpeg_quality[1] <= 100:
            raise ConfigError(f"augment.jpeg_quality={jpeg_quality}: expected (low, high) with 1 <= low <= high <= 100")
        self.settings = dict(
            mirror=mirror,
            affine_p=affine_p,
            max_rotate=max_rotate,
            max_shift=max_shift,
            max_scale=max_scale,
            brightness_contrast_p=brightness_contrast_p,
            brightness_limit=brightness_limit,
            contrast_limit=contrast_limit,
            grayscale_p=grayscale_p,
            jpeg_p=jpeg_p,
            jpeg_quality=tuple(jpeg_quality),
        )
        self.seed = seed
        self.pipeline = build_train_pipeline(seed=seed, **self.settings)
        self._seeded_in = os.getpid()

    def __repr__(self) -> str:
        return f"TrainAugment({', '.join(f'{k}={v}' for k, v in self.settings.items())}, seed={self.seed})"

    def _reseed_in_worker(self) -> None:
        """A forked DataLoader worker inherits the parent's random state: give each worker its own stream."""
        import torch.utils.data

        info = torch.utils.data.get_worker_info()
        if info is not None:
            seed = (
                info.seed
                if self.seed is None
                else int(np.random.SeedSequence([self.seed, info.id]).generate_state(1)[0])
            )
            self.pipeline.set_random_seed(seed)
        self._seeded_in = os.getpid()

    def __call__(self, image: np.ndarray) -> np.ndarray:
        """uint8 (H, W, 3) or gray (H, W[, 1]) -> augmented uint8 (H, W, 3), C-contiguous (for torch.from_numpy)."""
        if self._seeded_in != os.getpid():
            self._reseed_in_worker()
        image = to_rgb(image)
        if not self.pipeline.transforms:
            return image
        return np.ascontiguousarray(self.pipeline(image=image)["image"])


def build_train_pipeline(
    mirror: bool,
    affine_p: float,
    max_rotate: float,
    max_shift: float,
    max_scale: float,
    brightness_contrast_p: float,
    brightness_limit: float,
    contrast_limit: float,
    grayscale_p: float,
    jpeg_p: float,
    jpeg_quality: tuple[int, int],
    seed: int | None,
):
    """The albumentations ``Compose`` of ``TrainAugment`` (only the enabled transforms), for use without it."""
    os.environ.setdefault("NO_ALBUMENTATIONS_UPDATE", "1")  # albumentations checks PyPI on import otherwise
    import albumentations as A

    transforms = []
    if mirror:
        transforms.append(A.HorizontalFlip(p=0.5))
    if affine_p > 0:
        transforms.append(
            A.Affine(
                scale=(1 - max_scale, 1 + max_scale),
                translate_percent=(-max_shift, max_shift),
                rotate=(-max_rotate, max_rotate),
                border_mode=cv2.BORDER_CONSTANT,
                fill=0,
                p=affine_p,
            )
        )
    if brightness_contrast_p > 0:
        transforms.append(
            A.RandomBrightnessContrast(
                brightness_limit=brightness_limit, contrast_limit=contrast_limit, p=brightness_contrast_p
            )
        )
    if grayscale_p > 0:
        transforms.append(A.ToGray(num_output_channels=3, p=grayscale_p))
    if jpeg_p > 0:
        transforms.append(A.ImageCompression(quality_range=jpeg_quality, compression_type="jpeg", p=jpeg_p))
    return A.Compose(transforms, seed=seed)
