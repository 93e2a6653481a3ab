import warnings

import lightning as L
import pytest
import torch
import torch.nn.functional as F
from lightning.pytorch.trainer.states import TrainerFn

from amlit.backbones import SphereFace
from amlit.data import CasiaDataModule, ImageFolder
from amlit.errors import ConfigError
from amlit.heads import AMSoftmax
from amlit.inference.record import RECORD_KEY
from amlit.module import FaceVerificationModule


def make_module(**kwargs) -> FaceVerificationModule:
    backbone = SphereFace(width_multiplier=0.125, embedding_dim=16)
    return FaceVerificationModule(backbone=backbone, head=AMSoftmax, num_classes=12, **kwargs)


def test_batch_is_normalized_on_the_device_in_channels_last():
    module = make_module()
    images = torch.randint(0, 256, (4, 112, 96, 3), dtype=torch.uint8)
    x, labels = module.on_after_batch_transfer((images, torch.arange(4)), 0)
    expected = (images.permute(0, 3, 1, 2).double() - 128.0) / 128.0
    torch.testing.assert_close(x.double(), expected)
    assert x.is_contiguous(memory_format=torch.channels_last)
    assert labels.tolist() == [0, 1, 2, 3]


def test_training_mirrors_each_image_or_leaves_it():
    module = make_module()
    trainer = L.Trainer(logger=False, enable_progress_bar=False)
    module.trainer = trainer
    trainer.training = True
    torch.manual_seed(0)
    images = torch.randint(0, 256, (64, 112, 96, 3), dtype=torch.uint8)
    x, _ = module.on_after_batch_transfer((images, torch.zeros(64, dtype=torch.long)), 0)
    plain = (images.permute(0, 3, 1, 2).float() - 128) / 128
    same = (x == plain).flatten(1).all(1)
    mirrored = (x == plain.flip(-1)).flatten(1).all(1)
    assert torch.all(same ^ mirrored)
    assert 16 < int(mirrored.sum()) < 48  # about half


def test_test_feature_is_normalized_sum_of_image_and_mirror():
    torch.manual_seed(0)
    module = make_module().eval()
    images = torch.randn(3, 3, 112, 96)
    with torch.no_grad():
        expected = F.normalize(module(images) + module(images.flip(-1)), dim=1)
    torch.testing.assert_close(module.embed(images), expected, rtol=1e-5, atol=1e-6)
    assert torch.allclose(module.embed(images).norm(dim=1), torch.ones(3))


def test_optimizer_follows_the_caffe_solver():
    module = make_module()
    module.trainer = L.Trainer(logger=False)
    config = module.configure_optimizers()
    optimizer, schedule = config["optimizer"], config["lr_scheduler"]
    weights, biases = optimizer.param_groups
    assert (weights["lr"], weights["weight_decay"], weights["momentum"]) == (0.1, 5e-4, 0.9)
    assert (biases["lr"], biases["weight_decay"]) == (0.2, 0.0)  # Caffe bias lr_mult 2, decay_mult 0
    n_bias = sum(1 for name, _ in module.named_parameters() if name.endswith(".bias"))
    assert len(biases["params"]) == n_bias == 5  # 4 stride-2 convs + fc5; residual convs have none
    assert any(p is module.head.weight for p in weights["params"])
    assert schedule["interval"] == "step"
    lrs = []
    for _ in range(28_001):
        lrs.append(optimizer.param_groups[0]["lr"])
        schedule["scheduler"].step()
    assert lrs[15_999] == pytest.approx(0.1) and lrs[16_000] == pytest.approx(0.01)
    assert lrs[24_000] == pytest.approx(1e-3) and lrs[28_000] == pytest.approx(1e-4)


def test_a_few_steps_lower_the_loss(tiny_tree):
    torch.manual_seed(0)
    dm = CasiaDataModule(ImageFolder(tiny_tree / "casia"), batch_size=24, num_workers=0)
    module = make_module(learning_rate=0.05)
    module.head = AMSoftmax(16, dm.num_classes)
    losses = []

    class Record(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            losses.append(float(outputs["loss"]))

    trainer = L.Trainer(
        max_steps=45,
        logger=False,
        enable_checkpointing=False,
        enable_progress_bar=False,
        callbacks=[Record()],
        accelerator="cpu",
        num_sanity_val_steps=0,
    )
    trainer.fit(module, datamodule=dm)
    assert len(losses) == 45
    assert sum(losses[-9:]) / 9 < sum(losses[:9]) / 9 - 0.3


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"learning_rate": -0.1}, r"model.learning_rate must be > 0, got -0.1"),
        ({"learning_rate": 0.0}, r"model.learning_rate must be > 0"),
        ({"momentum": 1.5}, r"model.momentum must satisfy 0 <= momentum < 1, got 1.5"),
        ({"momentum": 1.0}, r"model.momentum must satisfy"),
        ({"weight_decay": -1e-4}, r"model.weight_decay must be >= 0"),
        ({"lr_gamma": 0.0}, r"model.lr_gamma must satisfy 0 < lr_gamma <= 1, got 0.0"),
        ({"lr_gamma": 10.0}, r"model.lr_gamma must satisfy"),
        ({"lr_milestones": [5, 5]}, r"strictly increasing order, got \[5, 5\]"),  # would divide by 100 at step 5
        ({"lr_milestones": [8, 5]}, r"strictly increasing order"),
        ({"lr_milestones": [-1, 5]}, r"optimizer steps > 0 .*got \[-1, 5\]"),
        ({"lr_milestones": [0]}, r"optimizer steps > 0"),
    ],
)
def test_optimizer_settings_that_train_nothing_sensible_are_refused(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        make_module(**kwargs)


def test_edge_settings_that_make_sense_are_kept():
    module = make_module(momentum=0.0, lr_gamma=1.0, lr_milestones=[], weight_decay=0.0)  # plain SGD, constant lr
    assert (module.hparams.momentum, module.hparams.lr_gamma, list(module.hparams.lr_milestones)) == (0.0, 1.0, [])


def test_milestones_the_run_never_reaches_are_named_and_no_steps_is_refused():
    module = make_module(lr_milestones=[5, 10, 480])
    module.trainer = L.Trainer(max_steps=10, logger=False, enable_checkpointing=False)
    with pytest.warns(UserWarning, match=r"model.lr_milestones \[10, 480\] lie at or beyond trainer.max_steps=10"):
        module.on_fit_start()
    module.trainer = L.Trainer(max_steps=11, logger=False, enable_checkpointing=False)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # [5, 10] apply at steps 5 and 10 of 0..10; 480 is still named
        with pytest.raises(UserWarning, match=r"\[480\] lie at or beyond trainer.max_steps=11"):
            module.on_fit_start()
    module.trainer = L.Trainer(max_steps=0, logger=False, enable_checkpointing=False)
    with pytest.raises(ConfigError, match=r"trainer.max_steps=0 trains no step and writes no checkpoint"):
        module.on_fit_start()


def trained_with(head: dict, module: FaceVerificationModule) -> dict:
    """A checkpoint of ``module``'s weights whose inference record says it was trained with ``head``."""
    config = {"model": {"head": head}}
    return {"state_dict": module.state_dict(), RECORD_KEY: {"training": {"config": config}}, "hyper_parameters": {}}


AM_SOFTMAX = {"class_path": "amlit.heads.AMSoftmax", "init_args": {"margin": 0.35, "scale": 30.0}}


def test_a_checkpoint_of_another_head_is_refused_for_testing_naming_both():
    module = make_module()  # AMSoftmax(margin=0.35, scale=30)
    arcface = {"class_path": "amlit.heads.ArcFace", "init_args": {"margin": 0.5, "scale": 64.0, "easy_margin": False}}
    with pytest.raises(ConfigError) as info:
        module.on_load_checkpoint(trained_with(arcface, module))  # same weights: only the record tells them apart
    message = str(info.value)
    assert (
        "trained with the head ArcFace(margin=0.5, scale=64.0, easy_margin=False), this config has AMSoftmax("
        in message
    )
    assert "the same --model.head.* overrides" in message and "\n" not in message
    narrower = {**AM_SOFTMAX, "init_args": {"margin": 0.25, "scale": 30.0}}
    with pytest.raises(
        ConfigError, match=r"AMSoftmax\(margin=0.25, scale=30.0\), this config has AMSoftmax\(margin=0.35"
    ):
        module.on_load_checkpoint(trained_with(narrower, module))
    module.on_load_checkpoint(trained_with(AM_SOFTMAX, module))  # the same head: loads
    module.on_load_checkpoint({"state_dict": module.state_dict()})  # no record (another tool): weights alone


def test_resuming_with_changed_head_settings_is_said_and_another_head_class_is_refused(monkeypatch):
    module = make_module(compile_head=False)
    module.trainer = L.Trainer(logger=False, enable_checkpointing=False)
    module.trainer.state.fn = TrainerFn.FITTING
    said = []
    monkeypatch.setattr("amlit.module.rank_zero_info", said.append)
    module.on_load_checkpoint(trained_with({**AM_SOFTMAX, "init_args": {"margin": 0.1, "scale": 30.0}}, module))
    module.on_train_start()
    assert said == ["resumed with changed head settings, applied from step 0: model.head.margin 0.1 -> 0.35"]
    said.clear()
    module.on_load_checkpoint(trained_with(AM_SOFTMAX, module))
    module.on_train_start()
    assert said == []  # unchanged: nothing to say
    center = {"class_path": "amlit.heads.CenterLoss", "init_args": {"loss_weight": 0.003, "alpha": 0.5, "dropout": 0}}
    with pytest.raises(
        ConfigError, match=r"CenterLoss\(.*a run cannot change its head class mid-way.*leave out --ckpt"
    ):
        module.on_load_checkpoint(trained_with(center, module))


def test_a_checkpoint_with_other_weights_is_refused_naming_them():
    module = make_module()
    weights = module.state_dict()
    center_loss = {**weights, "head.bias": torch.zeros(12), "head.centers": torch.zeros(12, 16)}
    with pytest.raises(
        ConfigError,
        match=r"does not fit this model \(checkpoint vs model: only in the checkpoint: "
        r"head.bias, head.centers\)",
    ):
        module.on_load_checkpoint({"state_dict": center_loss})
    no_head = {name: value for name, value in weights.items() if not name.startswith("head.")}
    with pytest.raises(ConfigError, match=r"only in the model: head.weight\): use the model.backbone/model.head"):
        module.on_load_checkpoint({"state_dict": no_head})
    module.strict_loading = False  # Lightning loads such a checkpoint then, and so does amlit
    module.on_load_checkpoint({"state_dict": no_head})
