"""amlit.compat: each reliance on framework internals, with the test that fails when the framework changes."""

import logging

import pytest
import torch
from torch.utils.data import DataLoader, Dataset

from amlit.compat import LIGHTNING_RANK_ZERO_LOGGER, silence_lightning_adverts, worker_error_message
from amlit.errors import BadDataError


class _Broken(Dataset):
    def __len__(self) -> int:
        return 4

    def __getitem__(self, index: int):
        raise BadDataError(f"image /data/{index}.jpg: not an image\nsecond line of the message")


def test_a_worker_error_is_reraised_with_its_traceback_and_unwrapped_to_its_message():
    with pytest.raises(BadDataError) as info:
        next(iter(DataLoader(_Broken(), batch_size=2, num_workers=1)))
    assert "DataLoader worker process" in str(info.value)  # what PyTorch does today
    assert worker_error_message(info.value) == "image /data/0.jpg: not an image\nsecond line of the message"
    plain = BadDataError("plain message")
    assert worker_error_message(plain) == "plain message"


def test_lightning_tips_are_dropped_and_lightning_still_prints_them(tmp_path, caplog):
    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    logger = logging.getLogger(LIGHTNING_RANK_ZERO_LOGGER)
    saved = list(logger.filters)
    try:
        logger.filters.clear()
        with caplog.at_level(logging.INFO, logger=LIGHTNING_RANK_ZERO_LOGGER):
            L.Trainer(logger=CSVLogger(tmp_path), default_root_dir=tmp_path, accelerator="cpu")
        assert any(r.getMessage().startswith("💡 Tip:") for r in caplog.records)  # else drop the filter
        caplog.clear()
        silence_lightning_adverts()
        with caplog.at_level(logging.INFO, logger=LIGHTNING_RANK_ZERO_LOGGER):
            L.Trainer(logger=CSVLogger(tmp_path), default_root_dir=tmp_path, accelerator="cpu")
        assert not any("Tip:" in r.getMessage() for r in caplog.records)
        assert any("GPU available" in r.getMessage() for r in caplog.records)  # other information still comes
    finally:
        logger.filters[:] = saved


def test_warnings_print_as_one_line_without_their_source_line():
    from amlit.cli import _format_warning

    text = _format_warning(UserWarning("left out 2 files"), UserWarning, "/x/amlit/data/sources.py", 180, "warn(x)")
    assert text == "amlit: warning: left out 2 files\n"
    text = _format_warning(DeprecationWarning("old"), DeprecationWarning, "/x/torch/y.py", 3, "src")
    assert text == "DeprecationWarning: old\n"


def _fit_tiny(tmp_path, callbacks=(), max_steps: int = 1, enable_checkpointing: bool = False):
    import lightning as L

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    data = DataLoader(torch.utils.data.TensorDataset(torch.ones(4, 2)), batch_size=2)
    trainer = L.Trainer(max_steps=max_steps, logger=False, enable_checkpointing=enable_checkpointing,
                        callbacks=list(callbacks), enable_progress_bar=False, enable_model_summary=False,
                        default_root_dir=tmp_path, accelerator="cpu")  # fmt: skip
    trainer.fit(Tiny(), data)


def test_the_framework_deprecation_we_hide_is_still_raised_and_hidden(tmp_path):
    import warnings

    from amlit.compat import silence_framework_deprecations

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        _fit_tiny(tmp_path)
    assert any("LeafSpec" in str(w.message) for w in caught)  # else drop it from _FRAMEWORK_DEPRECATIONS
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        silence_framework_deprecations()
        _fit_tiny(tmp_path)
    assert not any("LeafSpec" in str(w.message) for w in caught)


def test_progress_bars_refresh_rarely_when_stderr_is_a_log_file():
    import io

    from amlit.progress import LOG_REFRESH_SECONDS, progress_bar

    with progress_bar(range(3), file=io.StringIO()) as bar:  # under pytest, stderr is captured: not a terminal
        assert bar.mininterval == LOG_REFRESH_SECONDS


# ---- each reliance on a framework internal, checked against the installed framework --------------------------
def test_is_logging_step_follows_log_every_n_steps(tmp_path):
    import lightning as L

    from amlit.compat import is_logging_step

    seen = []

    class Tiny(L.LightningModule):
        def __init__(self):
            super().__init__()
            self.layer = torch.nn.Linear(2, 1)

        def training_step(self, batch, batch_idx):
            seen.append(is_logging_step(self.trainer))
            return self.layer(batch[0]).sum()

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.1)

    assert hasattr(L.Trainer(logger=False, default_root_dir=tmp_path), "_logger_connector")  # else the fallback runs
    data = DataLoader(torch.utils.data.TensorDataset(torch.ones(8, 2)), batch_size=2)
    trainer = L.Trainer(max_steps=4, log_every_n_steps=2, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")  # fmt: skip
    trainer.fit(Tiny(), data)
    assert seen == [False, True, False, True]


def test_save_last_checkpoint_writes_modelcheckpoints_last_file(tmp_path):
    import lightning as L
    from lightning.pytorch.callbacks import ModelCheckpoint

    from amlit.compat import save_last_checkpoint

    saver = ModelCheckpoint(dirpath=tmp_path / "ckpt", save_last=True, save_top_k=0, every_n_train_steps=1000)

    class SaveAtStep1(L.Callback):
        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                save_last_checkpoint(saver, trainer)

    _fit_tiny(tmp_path, callbacks=[saver, SaveAtStep1()], max_steps=2, enable_checkpointing=True)
    assert (tmp_path / "ckpt" / "last.ckpt").is_file() and saver.last_model_path.endswith("last.ckpt")


def test_stop_at_end_of_step_stops_fit_with_lightnings_sigterm_exception_after_that_batch(tmp_path):
    import lightning as L
    from lightning.pytorch.utilities.exceptions import SIGTERMException

    from amlit.compat import stop_at_end_of_step

    class StopAtStep1(L.Callback):
        stopped_at = None

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            if trainer.global_step == 1:
                stop_at_end_of_step(trainer)

        def on_exception(self, trainer, pl_module, exception):
            self.stopped_at = trainer.global_step if isinstance(exception, SIGTERMException) else None

    stopper = StopAtStep1()
    with pytest.raises(SIGTERMException):
        _fit_tiny(tmp_path, callbacks=[stopper], max_steps=4)
    assert stopper.stopped_at == 1


def test_wandb_settings_and_netrc_lookup(tmp_path, monkeypatch):
    from amlit.compat import wandb_netrc_has_key, wandb_settings

    settings = wandb_settings()
    assert settings is not None and str(settings.base_url).startswith("http")
    netrc = tmp_path / "netrc"
    netrc.write_text("machine api.example.org\n  login user\n  password k" + "0" * 39 + "\n")
    netrc.chmod(0o600)
    monkeypatch.setenv("NETRC", str(netrc))
    assert wandb_netrc_has_key("https://api.example.org")
    assert not wandb_netrc_has_key("https://elsewhere.example.org")


def test_assert_on_device_fails_with_the_message():
    from amlit.compat import assert_on_device

    assert_on_device(torch.tensor(True), "never shown")
    with pytest.raises(RuntimeError, match="labels out of range"):
        assert_on_device(torch.tensor(False), "labels out of range")


def test_the_private_lightning_hooks_amlit_overrides_still_exist():
    import inspect

    from lightning.pytorch.cli import LightningCLI

    assert list(inspect.signature(LightningCLI._parse_ckpt_path).parameters) == ["self"]
    parameters = list(inspect.signature(LightningCLI._prepare_subcommand_parser).parameters)
    assert parameters == ["self", "klass", "subcommand", "kwargs"]


def test_validate_and_test_default_to_one_results_table_not_lightnings_copies(monkeypatch):
    from amlit.cli import AmlitCLI
    from amlit.module import FaceVerificationModule

    defaults = {}

    class Probe(AmlitCLI):
        def _prepare_subcommand_parser(self, klass, subcommand, **kwargs):
            parser = super()._prepare_subcommand_parser(klass, subcommand, **kwargs)
            defaults[subcommand] = parser.get_defaults().get("verbose", "absent")
            return parser

    with pytest.raises(SystemExit):
        Probe(FaceVerificationModule, subclass_mode_data=True, args=["--help"], run=True)
    assert defaults == {"fit": "absent", "validate": False, "test": False, "predict": "absent"}
