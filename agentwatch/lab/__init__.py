"""The offline lab: simulated worlds, backtests, their evaluation, the HTML report, benchmarks.

Subpackages and modules: :mod:`~agentwatch.lab.sim` (the fleet simulator and world specs),
:mod:`~agentwatch.lab.labels` (the typed label model), :mod:`~agentwatch.lab.backtest`
(replay a trace through the live engine), :mod:`~agentwatch.lab.evaluation` (recall, time to
detect, false episodes, targets), :mod:`~agentwatch.lab.matrix` (the 24-world evaluation
matrix, its sealed half, per-world backtests), :mod:`~agentwatch.lab.compare` (two rules
files side by side), :mod:`~agentwatch.lab.whatif` (rules re-run with stricter thresholds),
:mod:`~agentwatch.lab.report` (the HTML report), :mod:`~agentwatch.lab.commands` (what
``agentwatch backtest`` runs), :mod:`~agentwatch.lab.bench` and
:mod:`~agentwatch.lab.halt_bench` (benchmarks of the live worker), and
:mod:`~agentwatch.lab.ruletest` (``agentwatch rules test``: unit tests of rules against
fixture events). Nothing here runs inside a worker; the specs of the matrix are in
``agentwatch/lab/worlds/``.
"""

__all__: list[str] = []
