"""The evaluation matrix: world specs in two halves, the seal, and per-world evaluation.

:mod:`~agentwatch.lab.matrix.design` defines the 24 worlds and their factors;
:mod:`~agentwatch.lab.matrix.seal` checks the sealed half against its committed manifest;
:mod:`~agentwatch.lab.matrix.run` backtests a half world by world
(``agentwatch backtest --worlds tuning``). The specs live in ``agentwatch/lab/worlds/``.
"""

__all__: list[str] = []
