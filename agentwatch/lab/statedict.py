"""Train the Zstandard dictionary that compresses the baselines table's values.

``python -m agentwatch.lab.statedict OUT`` simulates the first events of three tuning worlds
(sparse, mixed, dense), runs them through the shipped rules, and trains a 16 KiB dictionary on
the agents' uncompressed values (:func:`~agentwatch.streams.state_codec.encode_raw_state`),
sampled at several points of each run so it sees young and settled agents. The shipped
``agentwatch/streams/state-1.zdict`` and ``state-2.zdict`` (after detector floats were
persisted with seven significant digits) were made this way; a new dictionary ships under a new id
(values name the dictionary they were written with, so older values stay readable).
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Final

import zstandard

from agentwatch.detectors.engine import Engine
from agentwatch.detectors.rules import load_rules
from agentwatch.lab.matrix.seal import WORLDS_DIR
from agentwatch.lab.sim import Simulation, load_world
from agentwatch.streams.state_codec import encode_raw_state

__all__ = ["samples", "train"]

WORLDS: Final = ("t01-sparse-small-subtle", "t06-mixed-medium-blatant", "t12-dense-large-moderate")
EVENTS: Final = 120_000
CHECKPOINTS: Final = 3
DICT_BYTES: Final = 16 * 1024


def samples(worlds: Sequence[str] = WORLDS, events: int = EVENTS) -> list[bytes]:
    """Uncompressed table values of every agent, at ``CHECKPOINTS`` points of each world."""
    out: list[bytes] = []
    for name in worlds:
        world = load_world(WORLDS_DIR / "tuning" / f"{name}.yml")
        engine = Engine(load_rules())
        stream = Simulation(world.config).event_list(limit=events)
        step = max(1, len(stream) // CHECKPOINTS)
        for i, event in enumerate(stream, 1):
            engine.process(event)
            if i % step == 0:
                out += [
                    encode_raw_state(0, baseline, engine.states.get(agent, {}))
                    for agent, baseline in engine.baselines.items()
                ]
    return out


def train(values: Sequence[bytes], size: int = DICT_BYTES) -> bytes:
    """A Zstandard dictionary of ``size`` bytes trained on ``values``."""
    return zstandard.train_dictionary(size, list(values)).as_bytes()


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if len(args) != 1:
        print("usage: python -m agentwatch.lab.statedict OUT.zdict", file=sys.stderr)
        return 2
    values = samples()
    Path(args[0]).write_bytes(train(values))
    print(f"trained on {len(values)} values, {sum(map(len, values)) // len(values)} B mean")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
