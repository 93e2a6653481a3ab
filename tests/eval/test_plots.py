import numpy as np
import pytest

from amlit.eval.curves import Curve
from amlit.eval.plots import plot_curves


def test_one_png_per_stage_and_curve_with_every_eval_set(tmp_path):
    roc = Curve(np.array([1e-4, 1e-2, 1.0]), np.array([0.5, 0.9, 1.0]), "FAR", "TAR", log_x=True)
    cmc = Curve(np.arange(1, 11), np.linspace(0.8, 1.0, 10), "rank", "identification rate")
    written = plot_curves({"test/lfw/roc": roc, "test/cfp_fp/roc": roc, "test/megaface/cmc": cmc}, tmp_path)
    assert sorted(p.name for p in written) == ["test_cmc.png", "test_roc.png"]
    for path in written:
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and path.stat().st_size > 5000


def test_curve_rejects_mismatched_points():
    with pytest.raises(ValueError, match="1-d x and y of one length"):
        Curve(np.zeros(3), np.zeros(4), "x", "y")
