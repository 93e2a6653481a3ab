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


def _fit_tiny(tmp_path):
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
    trainer = L.Trainer(max_steps=1, logger=False, enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, default_root_dir=tmp_path, accelerator="cpu")  # fmt: skip
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
