"""Decoded spans in, events and rejections out: mapping plus trace joining, no I/O.

This is the receiver's hot path (and what ``agentwatch bench --otlp`` measures with
decoding): one :class:`SpanPipeline` per receiver keeps the held spans of all requests.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass, field

from agentwatch.ingest.mapping import Mapped, Reject, Skip, SpanMapper
from agentwatch.ingest.spans import SpanRecord
from agentwatch.ingest.traces import Joined, TraceJoiner
from agentwatch.schemas.events import MAX_EVENT_BYTES

__all__ = ["Outcome", "SpanPipeline"]

NO_AGENT = (
    "no gen_ai.agent.id or gen_ai.agent.name on the span, its invoke_agent ancestors in the "
    "trace or its resource"
)


@dataclass
class Outcome:
    """What became of some spans."""

    events: list[tuple[bytes, bytes]] = field(default_factory=list)
    """``(key, value)``: agent id and event JSON, for the actions topic."""
    rejected: list[tuple[SpanRecord, str, str]] = field(default_factory=list)
    """``(span, reason, detail)`` for the dead-letter topic."""
    skipped: Counter[str] = field(default_factory=Counter)
    mapped: Counter[tuple[str, str]] = field(default_factory=Counter)
    """By ``(convention, kind)``."""
    expired_early: int = 0

    def summary(self, limit: int = 3) -> str:
        """The rejections in one line, for an OTLP ``partial_success.error_message``."""
        by_reason: Counter[str] = Counter(reason for _, reason, _ in self.rejected)
        example: dict[str, str] = {}
        for _, reason, detail in self.rejected:
            example.setdefault(reason, detail)
        parts = [
            f"{reason}={n} ({example[reason][:200]})" for reason, n in by_reason.most_common(limit)
        ]
        more = len(by_reason) - limit
        return (
            f"{len(self.rejected)} span(s) rejected and dead-lettered: "
            + "; ".join(parts)
            + (f"; +{more} more reasons" if more > 0 else "")
        )


class SpanPipeline:
    """Classifies, joins and encodes spans.

    Parameters
    ----------
    mapper
        Span to event mapping.
    joiner
        Holds spans until their agent is known.
    max_event_bytes
        Larger events are rejected (``too_large``).
    """

    def __init__(
        self, mapper: SpanMapper, joiner: TraceJoiner, max_event_bytes: int = MAX_EVENT_BYTES
    ) -> None:
        self.mapper = mapper
        self.joiner = joiner
        self.max_event_bytes = max_event_bytes

    def process(self, spans: Iterable[SpanRecord], out: Outcome) -> None:
        """Take spans from one request; decided ones land in ``out`` at once."""
        joined = Joined()
        classify, add = self.mapper.classify, self.joiner.add
        for span in spans:
            result = classify(span)
            if type(result) is Mapped:
                add(span, result, joined)
            elif type(result) is Skip:
                out.skipped[result.reason] += 1
                add(span, None, joined)  # a link in some chain, perhaps
            else:
                assert isinstance(result, Reject)
                out.rejected.append((span, result.reason, result.detail))
                add(span, None, joined)
        self._emit(joined, out)

    def expire(self, out: Outcome) -> None:
        """Decide the spans that waited long enough."""
        joined = Joined()
        self.joiner.expire(joined)
        self._emit(joined, out)

    @property
    def held(self) -> int:
        """Spans waiting for their agent."""
        return self.joiner.held

    def _emit(self, joined: Joined, out: Outcome) -> None:
        out.expired_early += joined.expired_early
        event, limit = self.mapper.event, self.max_event_bytes
        for span, mapped, agent in joined.ready:
            if agent is None:
                out.rejected.append((span, "no_agent_id", NO_AGENT))
                continue
            payload = event(span, mapped, agent, limit)
            if type(payload) is bytes:
                out.events.append((agent.encode(), payload))
                out.mapped[mapped.convention, mapped.kind] += 1
            else:
                assert isinstance(payload, Reject)
                out.rejected.append((span, payload.reason, payload.detail))
