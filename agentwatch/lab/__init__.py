"""The offline lab: simulated worlds, backtests, their evaluation, the HTML report, benchmarks.

Subpackages and modules: :mod:`~agentwatch.lab.sim` (the fleet simulator),
:mod:`~agentwatch.lab.labels` (the typed label model), :mod:`~agentwatch.lab.backtest`
(replay a trace through the live engine), :mod:`~agentwatch.lab.evaluation` (recall, time to
detect, false episodes), :mod:`~agentwatch.lab.report` (the HTML report),
:mod:`~agentwatch.lab.bench` and :mod:`~agentwatch.lab.halt_bench` (benchmarks of the live
worker). Nothing here runs inside a worker.
"""

__all__: list[str] = []
