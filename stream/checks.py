"""The one range check of mespot's configurations (a leaf module: it imports nothing of mespot's
but its errors, so every module may use it without an import circle).
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from stream.errors import ConfigError

__all__ = ["check_number"]


def check_number(
    prefix: str,
    name: str,
    value: object,
    lo: float,
    hi: float,
    *,
    integer: bool = False,
    lo_open: bool = False,
    hi_open: bool = False,
) -> None:
    """The one range check of mespot's configurations: refuse `value` unless it is a finite number
    (an integer when `integer`; never a bool) in [lo, hi], or (lo, ... / ..., hi) where open.
    NumPy scalars count as the numbers they hold (`numbers.Real`, `numbers.Integral`).

    Raises:
        ConfigError: ``"{prefix} {name}={value!r}: must be a number in [lo, hi]"``.
    """
    kind = numbers.Integral if integer else numbers.Real
    ok = (
        not isinstance(value, bool | np.bool_)
        and isinstance(value, kind)
        and math.isfinite(value)  # type: ignore[arg-type]
        and (lo < value if lo_open else lo <= value)  # type: ignore[operator]
        and (value < hi if hi_open else value <= hi)  # type: ignore[operator]
    )
    if not ok:
        what = "an integer" if integer else "a number"
        span = f"{'(' if lo_open else '['}{lo:g}, {hi:g}{')' if hi_open else ']'}"
        raise ConfigError(f"{prefix} {name}={value!r}: must be {what} in {span}")
