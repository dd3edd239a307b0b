"""Shared helpers for the cost detector tests: calls of a small fleet, replayed as the engine
does (one detector, per-agent and per-fleet state)."""

from __future__ import annotations

import random
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from agentwatch.detectors.base import AgentDetector, Finding
from agentwatch.lab.sim import llm_cost
from agentwatch.schemas import ActionEvent

T0 = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


def call(
    agent: str,
    i: int,
    seconds: float,
    *,
    tokens: float = 2500.0,
    out: float = 300.0,
    model: str = "gpt-4o-mini",
    fleet: str = "support",
) -> ActionEvent:
    """One LLM call of ``agent`` at ``seconds`` after T0 (no validation: fast)."""
    tokens_in, tokens_out = int(tokens), int(out)
    return ActionEvent.model_construct(
        event_id=f"{agent}-{i}",
        agent_id=agent,
        fleet=fleet,
        ts=T0 + timedelta(seconds=seconds),
        action="chat",
        kind="llm",
        status="ok",
        model=model,
        input_tokens=tokens_in,
        output_tokens=tokens_out,
        cost_usd=llm_cost(model, tokens_in, tokens_out),
    )


@dataclass
class Replay:
    """Feeds calls to one detector with per-agent and per-fleet state, keeps the findings."""

    detector: AgentDetector
    states: dict[str, dict[str, Any]] = field(default_factory=dict)
    fleets: dict[str, dict[str, Any]] = field(default_factory=dict)
    found: list[tuple[ActionEvent, Finding]] = field(default_factory=list)

    def __call__(self, event: ActionEvent) -> list[Finding]:
        state = self.states.setdefault(event.agent_id, {})
        fleet = self.fleets.setdefault(event.fleet, {})
        out = self.detector.update(event, None, state, fleet)  # type: ignore[arg-type]
        self.found.extend((event, f) for f in out)
        return out

    def agents(self) -> set[str]:
        return {e.agent_id for e, _ in self.found}


@dataclass
class Fleet:
    """Agents calling every ``period`` seconds with lognormal prompt and output noise."""

    agents: int = 6
    period: float = 10.0
    seed: int = 1
    name: str = "support"
    rng: random.Random = field(init=False)
    calls: dict[str, int] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    def ids(self) -> list[str]:
        return [f"{self.name}-{k}" for k in range(self.agents)]

    def tick(
        self,
        replay: Replay,
        step: int,
        *,
        factor: dict[str, float] | None = None,
        models: dict[str, str] | None = None,
        only: set[str] | None = None,
    ) -> None:
        """Every agent (or those in ``only``) makes call number ``step``; ``factor`` scales
        an agent's prompt, ``models`` switches its model."""
        for k, agent in enumerate(self.ids()):
            if only is not None and agent not in only:
                continue
            i = self.calls.get(agent, 0)
            self.calls[agent] = i + 1
            f = (factor or {}).get(agent, 1.0)
            replay(
                call(
                    agent,
                    i,
                    step * self.period + k * 0.5,
                    tokens=2500.0 * f * self.rng.lognormvariate(0.0, 0.35),
                    out=300.0 * self.rng.lognormvariate(0.0, 0.4),
                    model=(models or {}).get(agent, "gpt-4o-mini"),
                    fleet=self.name,
                )
            )
