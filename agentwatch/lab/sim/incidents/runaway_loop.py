"""``runaway_loop``: the agent repeats one call on one target, far above its normal rate."""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any

from pydantic import Field

from agentwatch.lab.sim.draws import lognormal
from agentwatch.lab.sim.incidents.base import Incident, IncidentOptions, lerp, register_incident
from agentwatch.lab.sim.prices import MAX_INPUT_TOKENS, MODEL_TPS, llm_cost

if TYPE_CHECKING:
    from agentwatch.lab.sim.profiles import Profile
    from agentwatch.lab.sim.runner import AgentRunner

__all__ = ["RunawayLoop", "RunawayLoopOptions"]


class RunawayLoopOptions(IncidentOptions):
    """Options of a ``runaway_loop``."""

    rate_per_min: float | None = Field(default=None, ge=1.0, le=600.0)
    """Calls a minute (default: 20 at intensity 0 to 60 at 1)."""
    llm_between: bool = True
    """A short LLM call before each repetition (else the tool alone, back to back)."""
    new_agent: bool = False
    """The agent's first event is the loop's (a brand-new agent with no history)."""


@register_incident
class RunawayLoop(Incident):
    """The agent's most frequent low-risk tool, on one target, with a short LLM call before
    each repetition (unless ``llm_between`` is off). Classic: about six times the agent's tool
    rate, 12 to 60 calls a minute; with an intensity: 20 (subtle) to 60 (blatant) a minute."""

    kind = "runaway_loop"
    durations_min = (3.0, 8.0)
    takes_over = True
    Options = RunawayLoopOptions

    options: RunawayLoopOptions
    action: str
    target: str
    period_s: float

    @property
    def newborn(self) -> bool:
        return self.options.new_agent

    def plan(self, prof: Profile, rng: random.Random) -> dict[str, Any]:
        fleet = prof.fleet
        low = [i for i in range(len(fleet.tools)) if fleet.tools[i].risk == "low"]
        top = max(low, key=lambda i: prof.stationary[i])
        self.action = fleet.tools[top].name
        self.target = prof.target(self.action, rng, prof.new_session(rng, ""), {})
        opts = self.options
        if opts.rate_per_min is not None:
            rate = opts.rate_per_min
        elif self.intensity is not None:
            rate = lerp(20.0, 60.0, self.intensity)
        else:
            tool_rate = prof.rate / (1.0 + prof.llm_share)
            rate = min(max(6.0 * tool_rate, 12.0), 60.0)
        self.period_s = 60.0 / rate
        params: dict[str, Any] = {
            "action": self.action,
            "target": self.target,
            "rate_per_min": round(rate, 1),
        }
        if self.intensity is not None or opts.model_fields_set:
            params["llm_between"] = opts.llm_between
            params["new_agent"] = opts.new_agent
        return params

    def loop_step(self, runner: AgentRunner) -> None:
        rng = runner.rng
        p = runner.p
        t0 = runner.t
        t = t0
        if self.options.llm_between:
            t = self._llm(runner, t)
        spec = p.fleet.tool(self.action)
        tool_latency = lognormal(rng, spec.latency_ms, spec.latency_sigma * 0.5)
        kw: dict[str, Any] = {
            "agent_id": runner.agent_id,
            "fleet": runner.fleet_name,
            "session_id": runner.sess.sid,
            "action": self.action,
            "target": self.target,
            "latency_ms": round(tool_latency, 1),
        }
        if spec.kind != "tool":
            kw["kind"] = spec.kind
        if spec.risk != "low":
            kw["risk"] = spec.risk
        for b in runner.bursts:  # a tool outage fails the looping calls too
            if b.tool == self.action and b.start_s <= t < b.end_s and rng.random() < b.error_rate:
                kw["status"] = "error"
                kw["error"] = b.error
        runner.buf.append((t, runner.idx, kw))
        t += tool_latency / 1000.0
        runner.t = max(t + 0.05, t0 + self.period_s * (0.8 + 0.4 * rng.random()))

    def _llm(self, runner: AgentRunner, t: float) -> float:
        """The short LLM call that decides to repeat; returns when it is done."""
        rng = runner.rng
        p = runner.p
        model = runner.upgrade_model if t >= runner.upgrade_at else p.model
        prompt = runner.prompt_in if t >= runner.prompt_at else 1.0
        tokens_in = min(
            int(p.in_base * 1.4 * (0.98 + 0.04 * rng.random()) * prompt), MAX_INPUT_TOKENS
        )
        tokens_out = int(40 + 30 * rng.random())
        latency = 350.0 + 200.0 * rng.random() + tokens_out / MODEL_TPS[model] * 1000.0
        runner.buf.append(
            (
                t,
                runner.idx,
                {
                    "agent_id": runner.agent_id,
                    "fleet": runner.fleet_name,
                    "session_id": runner.sess.sid,
                    "action": "chat",
                    "kind": "llm",
                    "model": model,
                    "input_tokens": tokens_in,
                    "output_tokens": tokens_out,
                    "cost_usd": round(llm_cost(model, tokens_in, tokens_out), 7),
                    "latency_ms": round(latency, 1),
                },
            )
        )
        t += latency / 1000.0 + 0.05
        return t
