"""False accept rates: how many false accepts a FAR target allows on a set with a given number of impostors."""

from __future__ import annotations

import math
from fractions import Fraction

from amlit.errors import ConfigError


def far_count(far: float, num_impostors: int) -> int:
    """``floor(far * num_impostors)`` with ``far`` read as the decimal it prints as (1e-6 * 3.53e9 = 3530 exactly)."""
    if not 0 <= far <= 1:
        raise ConfigError(f"FAR must be in [0, 1], got {far}")
    return math.floor(Fraction(repr(float(far))) * num_impostors)
