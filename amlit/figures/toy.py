"""Figure 4 of the AM-Softmax paper, the toy experiment: a 7-layer CNN with 3-D features trained on 10 classes with
Softmax, NormFace (s=10), A-Softmax (m=4), AM-Softmax (s=10, m=0.2) and (s=10, m=0.5); the normalized test features
drawn on the sphere, one colour per class (Sec. 3.2.4).

Each loss is amlit's own head (``amlit.heads``) on the same network, data, seed and schedule. Printed per loss: the
mean intra-class angle (between each normalized feature and its class centre, the normalized mean of its class's
normalized features), the minimum angle between two class centres, and the test accuracy of the nearest class
weight. A larger margin should shrink the intra-class angle (the paper: "our loss function can further shrink the
intra-class variance by setting a larger m").
"""

from __future__ import annotations

import itertools
import math
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from amlit.errors import ConfigError
from amlit.eval.plots import pyplot
from amlit.figures.plotting import check_figure_output, print_table
from amlit.figures.toy_data import NUM_CLASSES, generated_shapes, read_fashion_mnist
from amlit.heads import AMSoftmax, ASoftmax, MarginHead, Softmax

FEATURE_DIM = 3


def toy_network(width: int = 8) -> nn.Sequential:
    """6 conv (3x3, BatchNorm, PReLU) + 1 fully connected layer: (B, 1, 28, 28) -> (B, 3); a 2x2 max-pool after
    every second conv (28 -> 14 -> 7 -> 3), widths w/2w/4w. (The paper's 7-layer CNN is not specified further;
    BatchNorm lets every loss train from scratch in a few hundred CPU steps.)"""
    layers: list[nn.Module] = []
    channels = 1
    for out in (width, 2 * width, 4 * width):
        for _ in range(2):
            layers += [nn.Conv2d(channels, out, 3, padding=1, bias=False), nn.BatchNorm2d(out), nn.PReLU(out)]
            channels = out
        layers.append(nn.MaxPool2d(2))
    return nn.Sequential(*layers, nn.Flatten(), nn.Linear(channels * 3 * 3, FEATURE_DIM))


# loss key -> (name in the figure, head factory given the number of steps)
LOSSES: dict[str, tuple[str, Callable[[int], MarginHead]]] = {
    "softmax": ("Softmax", lambda steps: Softmax(FEATURE_DIM, NUM_CLASSES)),
    "normface": ("NormFace (s=10)", lambda steps: AMSoftmax(FEATURE_DIM, NUM_CLASSES, margin=0.0, scale=10.0)),
    # SphereFace's lambda schedule 1000 / (1 + gamma t), down to the caption's 0.5 at half of the steps
    "a_softmax": (
        "A-Softmax (m=4)",
        lambda steps: ASoftmax(
            FEATURE_DIM, NUM_CLASSES, 4, lambda_gamma=(1000.0 / 0.5 - 1.0) / max(1, steps // 2), lambda_min=0.5
        ),
    ),
    "am_0.2": ("AM-Softmax (s=10, m=0.2)", lambda steps: AMSoftmax(FEATURE_DIM, NUM_CLASSES, margin=0.2, scale=10.0)),
    "am_0.5": ("AM-Softmax (s=10, m=0.5)", lambda steps: AMSoftmax(FEATURE_DIM, NUM_CLASSES, margin=0.5, scale=10.0)),
}


def _tensor(images: np.ndarray) -> torch.Tensor:
    """uint8 (N, 28, 28) -> float (N, 1, 28, 28) in [-1, 1) as the paper's (x - 128) / 128."""
    return (torch.from_numpy(images).float()[:, None] - 128.0) / 128.0


def train_toy(
    head: MarginHead,
    train: tuple[np.ndarray, np.ndarray],
    steps: int,
    batch_size: int,
    learning_rate: float,
    width: int,
    seed: int,
) -> nn.Module:
    """SGD (momentum 0.9), lr x0.1 at 60% and 85% of the steps; the same seed for every loss. Weight decay 5e-4 on
    the network only: on class weights that the loss normalizes it only shrinks their norm, which raises their
    effective learning rate until training turns unstable (AM-Softmax m=0.5 collapsed to chance that way)."""
    torch.manual_seed(seed)
    network = toy_network(width)
    groups = [
        {"params": network.parameters(), "weight_decay": 5e-4},
        {"params": head.parameters(), "weight_decay": 0.0},
    ]
    optimizer = torch.optim.SGD(groups, lr=learning_rate, momentum=0.9)
    milestones = [int(0.6 * steps), int(0.85 * steps)]
    schedule = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones, gamma=0.1)
    images, labels = _tensor(train[0]), torch.from_numpy(train[1])
    order = torch.Generator().manual_seed(seed)
    batches = itertools.chain.from_iterable(
        torch.randperm(len(images), generator=order).split(batch_size) for _ in itertools.count()
    )
    network.train()
    head.train()
    for _, batch in zip(range(steps), batches, strict=False):
        loss = head(network(images[batch]), labels[batch]).loss
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        schedule.step()
    head.eval()
    return network.eval()


@torch.no_grad()
def angles(features: torch.Tensor, labels: torch.Tensor) -> tuple[float, float]:
    """(mean intra-class angle, minimum angle between class centres), degrees, of features (N, 3), labels (N,)."""
    unit = F.normalize(features.double(), dim=1)
    centres = F.normalize(torch.stack([unit[labels == c].mean(0) for c in range(NUM_CLASSES)]), dim=1)
    intra = torch.rad2deg(torch.acos((unit * centres[labels]).sum(1).clamp(-1, 1))).mean()
    between = torch.rad2deg(torch.acos((centres @ centres.T).clamp(-1, 1)))
    between.fill_diagonal_(math.inf)
    return float(intra), float(between.min())


def _plot(features: dict[str, tuple[np.ndarray, np.ndarray]], output: Path, per_class: int = 150) -> None:
    plt = pyplot()
    figure = plt.figure(figsize=(3.2 * len(features), 3.6), dpi=120)
    colours = plt.get_cmap("tab10")
    u, v = np.meshgrid(np.linspace(0, 2 * np.pi, 25), np.linspace(0, np.pi, 13))
    for index, (name, (unit, labels)) in enumerate(features.items()):
        axes = figure.add_subplot(1, len(features), index + 1, projection="3d")
        axes.plot_wireframe(np.cos(u) * np.sin(v), np.sin(u) * np.sin(v), np.cos(v), color="0.85", linewidth=0.3)
        for c in range(NUM_CLASSES):
            points = unit[labels == c][:per_class]
            axes.scatter(*points.T, s=2, color=colours(c), depthshade=False)
        axes.set_title(name, fontsize=8)
        axes.set_axis_off()
        axes.set_box_aspect((1, 1, 1))
    figure.tight_layout()
    output.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(output)
    plt.close(figure)


def figure_toy(
    output: Path = Path("figures/figure4_toy.png"),
    fashion_mnist: Path | None = None,
    losses: str | list[str] | None = None,
    steps: int = 800,
    batch_size: int = 64,
    learning_rate: float = 0.05,
    width: int = 8,
    train_images: int = 6000,
    test_images: int = 2000,
    seed: int = 0,
    threads: int | None = None,
) -> dict[str, dict[str, float]]:
    """Figure 4, the toy experiment: 3-D features of a small CNN per loss, drawn on the sphere.

    One network per loss (Softmax, NormFace, A-Softmax, AM-Softmax m=0.2 and 0.5); prints the mean intra-class
    angle, the minimum angle between class centres and the accuracy of the normalized test features.

    Args:
        output: PNG file to write.
        fashion_mnist: a folder with Fashion-MNIST's IDX files (train-images-idx3-ubyte[.gz], ...), as the paper
            used; without it, generated 28x28 shapes of 10 classes (amlit.figures.toy_data).
        losses: which of softmax, normface, a_softmax, am_0.2, am_0.5 to train, one or a list (default: all, in
            that order).
        steps, batch_size, learning_rate: training of each network (SGD, lr x0.1 at 60% and 85% of the steps).
        width: channels of the first conv layers (then 2x and 4x).
        train_images, test_images: how many images to use (the first ones of Fashion-MNIST's splits, or generated).
        seed: of the data generation, initialisation and batch order (the same for every loss).
        threads: torch CPU threads while training (default: torch's); 1 is much faster on a busy shared machine.

    Returns:
        Per loss key: ``intra_class_angle``, ``min_centre_angle`` (degrees) and ``accuracy``.
    """
    if (
        min(steps, batch_size, width, train_images, test_images, 1 if threads is None else threads) < 1
        or learning_rate <= 0
    ):
        raise ConfigError("steps, batch_size, width, train_images, test_images, threads and learning_rate must be > 0")
    keys = list(LOSSES) if losses is None else [losses] if isinstance(losses, str) else list(losses)
    unknown = [key for key in keys if key not in LOSSES]
    if unknown or not keys:
        raise ConfigError(f"unknown losses {unknown}: choose from {', '.join(LOSSES)}")
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:
        # Each loss is one panel: a repeat would train it again and draw the same panel twice.
        raise ConfigError(f"--losses names {repeated} more than once: list each loss once")
    check_figure_output(output)
    if fashion_mnist is not None:
        splits = read_fashion_mnist(Path(fashion_mnist))
        train = tuple(a[:train_images] for a in splits["train"])
        test = tuple(a[:test_images] for a in splits["test"])
        source = f"Fashion-MNIST from {fashion_mnist}"
    else:
        train, test = generated_shapes(train_images, seed), generated_shapes(test_images, seed + 1)
        source = "generated shapes (pass --fashion_mnist=<folder of IDX files> for the paper's data)"
    for option, (_, labels) in (("--train_images", train), ("--test_images", test)):
        absent = sorted(set(range(NUM_CLASSES)) - set(labels.tolist()))
        if absent:  # a class without test images has no centre: its angles (and the figure's numbers) are NaN
            raise ConfigError(
                f"{option}={len(labels)}: no image of class(es) {absent} among them; every one of the "
                f"{NUM_CLASSES} classes needs images: use more (the paper's: all 60,000 / 10,000)"
            )
    print(f"toy experiment: {len(train[0])} training / {len(test[0])} test images, {source}; {steps} steps each")
    results, drawn = {}, {}
    test_images_tensor, test_labels = _tensor(test[0]), torch.from_numpy(test[1])
    previous_threads = torch.get_num_threads()
    torch.set_num_threads(threads or previous_threads)
    try:
        for key in keys:
            name, make_head = LOSSES[key]
            started = time.monotonic()
            torch.manual_seed(seed)  # the head's class weights too: not from whatever ran before
            head = make_head(steps)
            network = train_toy(head, train, steps, batch_size, learning_rate, width, seed)
            with torch.no_grad():
                features = network(test_images_tensor)  # (N, 3)
                accuracy = float((head(features, test_labels).cosine.argmax(1) == test_labels).float().mean())
            intra, between = angles(features, test_labels)
            results[key] = {"intra_class_angle": intra, "min_centre_angle": between, "accuracy": accuracy}
            drawn[name] = (F.normalize(features, dim=1).numpy(), test[1])
            print(f"  {name}: {time.monotonic() - started:.0f} s")
    finally:
        torch.set_num_threads(previous_threads)
    print_table(
        "per loss (test set, normalized features)",
        ["intra-class angle (deg)", "min centre angle (deg)", "accuracy"],
        {LOSSES[key][0]: list(values.values()) for key, values in results.items()},
        fmt=".3f",
    )
    _plot(drawn, Path(output))
    print(f"wrote {output}")
    return results
