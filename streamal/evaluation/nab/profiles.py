"""NAB application profiles (cost matrices) and the scaled sigmoid that shapes credit."""

from __future__ import annotations

import math
from dataclasses import dataclass

__all__ = ["NAB_PROFILES", "NabProfile", "resolve_profile", "scaled_sigmoid"]


@dataclass(frozen=True)
class NabProfile:
    """Cost matrix of a NAB application profile.

    Parameters
    ----------
    a_tp : float
        Credit of a detection on the first row of a window.
    a_fp : float
        Largest cost of a detection outside windows.
    a_fn : float
        Cost of a window without any detection.
    a_tn : float, default 1.0
        Present in NAB's ``profiles.json`` but never used by the scorer.
    name : str, default "custom"
        Label used in results.

    Examples
    --------
    >>> NAB_PROFILES["reward_low_FN_rate"].a_fn
    2.0
    >>> NabProfile(a_tp=1.0, a_fp=0.5, a_fn=1.0).name
    'custom'
    """

    a_tp: float
    a_fp: float
    a_fn: float
    a_tn: float = 1.0
    name: str = "custom"


#: NAB's three application profiles (``config/profiles.json``).
NAB_PROFILES: dict[str, NabProfile] = {
    "standard": NabProfile(1.0, 0.11, 1.0, 1.0, "standard"),
    "reward_low_FP_rate": NabProfile(1.0, 0.22, 1.0, 1.0, "reward_low_FP_rate"),
    "reward_low_FN_rate": NabProfile(1.0, 0.11, 2.0, 1.0, "reward_low_FN_rate"),
}


def resolve_profile(profile: str | NabProfile) -> NabProfile:
    """The profile itself, or the NAB profile of that name."""
    if isinstance(profile, NabProfile):
        return profile
    try:
        return NAB_PROFILES[profile]
    except KeyError:
        raise ValueError(
            f"unknown NAB profile {profile!r}; choose from {sorted(NAB_PROFILES)}"
        ) from None


def scaled_sigmoid(x: float) -> float:
    """NAB's shape function ``f(x) = 2 / (1 + exp(5x)) - 1``, and ``-1`` when ``x > 3``.

    Parameters
    ----------
    x : float
        Relative position: in ``[-1, 0)`` inside a window, ``> 0`` after one.

    Returns
    -------
    float
        Value in ``[-1, 1)``; ``f(0) = 0``.

    Examples
    --------
    >>> round(scaled_sigmoid(-1.0), 6), scaled_sigmoid(0.0), scaled_sigmoid(3.5)
    (0.986614, 0.0, -1.0)
    """
    if x > 3.0:
        return -1.0
    # Same operation order as NAB: 2 * sigmoid(-5 x) - 1 with sigmoid(z) = 1 / (1 + exp(-z)).
    return 2 * (1 / (1 + math.exp(-(-5 * x)))) - 1.0
