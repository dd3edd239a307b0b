"""Univariate scorers on labelled operational metric streams, scored the way NAB scores them.

The corpus is a directory in the layout of the Numenta Anomaly Benchmark (``data/<category>/
<file>.csv`` with ``timestamp,value`` rows and ``labels/combined_windows.json``): NAB itself or
any subset of it, fetched by the user (NAB's data is not shipped here). Modules:
:mod:`~agentwatch.lab.univariate.corpus` (loading, the calibration and held-out halves),
:mod:`~agentwatch.lab.univariate.scoring` (window recall, delay, false alarms and NAB's standard
profile score), :mod:`~agentwatch.lab.univariate.candidates` (the scorers compared and the
false-alarm budget that turns scores into alarms), :mod:`~agentwatch.lab.univariate.run` (the
protocol: calibrate on one half, report both) and :mod:`~agentwatch.lab.univariate.command`
(``agentwatch lab univariate``).
"""

from agentwatch.lab.univariate.corpus import CorpusError, Series, half_of, load_corpus
from agentwatch.lab.univariate.scoring import SeriesResult, Summary, score_series, summarize

__all__ = [
    "CorpusError",
    "Series",
    "SeriesResult",
    "Summary",
    "half_of",
    "load_corpus",
    "score_series",
    "summarize",
]
