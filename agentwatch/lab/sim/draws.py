"""Seeded random draws: named generators and the fast samplers of the generator's hot path.

Every random choice of a simulation comes from a generator named by the seed and a path
(``seeded(seed, "profile", agent_id)``), so one agent's traffic does not depend on what other
agents or incidents drew, and no global random state is touched.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from statistics import NormalDist
from typing import Final

import numpy as np
from numpy.typing import NDArray

__all__ = [
    "Z",
    "cumulative",
    "exp1",
    "lognormal",
    "pick",
    "seeded",
    "stationary",
]

_SEED_NS: Final = "agentwatch-sim"


def seeded(seed: int, *parts: object) -> random.Random:
    """The generator named ``parts`` under ``seed``.

    String seeds are hashed with SHA-512: stable across processes and ``PYTHONHASHSEED``.

    Examples
    --------
    >>> seeded(1, "a").random() == seeded(1, "a").random() != seeded(1, "b").random()
    True
    """
    return random.Random(":".join((_SEED_NS, str(seed), *map(str, parts))))


# Standard normal quantiles at 2**13 evenly spaced probabilities: ``Z[rng.getrandbits(13)]``
# is a (finely discretised) N(0, 1) draw, several times cheaper than ``random.gauss``.
Z: Final[tuple[float, ...]] = tuple(NormalDist().inv_cdf((i + 0.5) / 8192) for i in range(8192))


def lognormal(rng: random.Random, median: float, sigma: float) -> float:
    """A lognormal draw with this median and shape."""
    return median * math.exp(sigma * Z[rng.getrandbits(13)])


def pick(rng: random.Random, seq: Sequence[str]) -> str:
    """``rng.choice`` for the hot path (one ``random()`` call, no rejection loop)."""
    return seq[int(rng.random() * len(seq))]


def exp1(rng: random.Random) -> float:
    """An Exp(1) draw."""
    return -math.log(1.0 - rng.random())


def cumulative(weights: Sequence[float]) -> list[float]:
    """Normalised cumulative weights; sample with ``bisect_right(cum, rng.random())``.

    Examples
    --------
    >>> cumulative([1, 0, 3])
    [0.25, 0.25, 1.0]
    """
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("all weights are zero")
    cum: list[float] = []
    acc = 0.0
    last = max(i for i, w in enumerate(weights) if w > 0)
    for i, w in enumerate(weights):
        acc += w
        cum.append(1.0 if i >= last else acc / total)
    return cum


def stationary(matrix: NDArray[np.float64]) -> list[float]:
    """The stationary law of the Markov chain with (unnormalised) transition ``matrix``."""
    rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1e-12)
    lazy = 0.5 * (rows + np.eye(rows.shape[0]))  # same stationary law, never periodic
    dist = np.full(rows.shape[0], 1.0 / rows.shape[0]) @ np.linalg.matrix_power(lazy, 512)
    dist = dist / dist.sum()
    # Rounded so that last-bit differences between numpy builds cannot change the stream.
    return [round(float(x), 9) for x in dist]
