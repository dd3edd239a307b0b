"""One agent at run time: its clock, session, Markov state, and the events it emits.

An :class:`AgentRunner` advances its agent window by window (:meth:`AgentRunner.advance`),
asking the incident running at the time, if any, how to deviate from normal traffic
(:class:`~agentwatch.lab.sim.incidents.Incident`'s hooks).
"""

from __future__ import annotations

import bisect
import math
from operator import itemgetter
from typing import Any

from agentwatch.lab.sim.catalog import ToolSpec
from agentwatch.lab.sim.changes import Burst, Change
from agentwatch.lab.sim.config import SimConfig
from agentwatch.lab.sim.draws import Z, cumulative, exp1, lognormal, seeded
from agentwatch.lab.sim.incidents import Incident
from agentwatch.lab.sim.prices import LLM_ERRORS, MAX_INPUT_TOKENS, MODEL_RATES
from agentwatch.lab.sim.profiles import Profile, Session

__all__ = ["AgentRunner", "Record"]

Record = tuple[float, int, dict[str, Any]]
"""``(time, agent index, event fields)``: one event before it is built."""


class AgentRunner:
    """Runtime state of one agent: advances its clock and emits records.

    Parameters
    ----------
    prof
        The agent's static traits.
    seed
        The simulation's seed (the agent draws from its own generator).
    t0
        Start of the simulation (epoch seconds).
    cfg
        The simulation's configuration.
    """

    __slots__ = (
        "agent_id",
        "approve_noise",
        "buf",
        "bursts",
        "chain",
        "diurnal",
        "fleet_name",
        "idx",
        "incidents",
        "p",
        "peak_hour",
        "prompt_at",
        "prompt_in",
        "prompt_out",
        "remaining",
        "rng",
        "rolled_chain",
        "rollout_at",
        "sched",
        "sess",
        "sessions",
        "slow",
        "state",
        "step_no",
        "t",
        "upgrade_at",
        "upgrade_model",
    )

    def __init__(self, prof: Profile, seed: int, t0: float, cfg: SimConfig) -> None:
        self.p = prof
        self.rng = seeded(seed, "run", prof.agent_id)
        self.idx = prof.index
        self.agent_id = prof.agent_id
        self.fleet_name = prof.fleet.name
        self.chain = [cumulative(row) for row in prof.chain_weights]
        self.rolled_chain: list[list[float]] | None = None
        self.rollout_at = math.inf
        self.upgrade_at = math.inf
        self.upgrade_model = prof.model
        self.prompt_at = math.inf
        self.prompt_in = 1.0
        self.prompt_out = 1.0
        self.diurnal = cfg.diurnal_amplitude
        self.peak_hour = cfg.diurnal_peak_hour
        self.slow = 1.0
        self.approve_noise = cfg.benign_unapproved_rate
        self.incidents: list[Incident] = []
        self.bursts: list[Burst] = []
        self.sched: list[tuple[float, dict[str, Any]]] = []
        self.buf: list[Record] = []
        self.sessions = 0
        self.remaining = 0
        self.step_no = 0
        self.state = len(prof.states)  # the entry row
        self.sess = Session("")
        # Agents start at a random point of their cycle (some mid-session, some idle).
        self.t = t0 + self.rng.random() * min(prof.idle_mean, 300.0)

    # -- setup ---------------------------------------------------------------------------
    def apply_change(self, change: Change) -> None:
        """Take a benign fleet-wide change into account (from its time for this agent)."""
        at = change.per_agent[self.agent_id]
        if change.kind == "model_upgrade":
            self.upgrade_at = at
            self.upgrade_model = change.new_models.get(self.agent_id, self.p.model)
        elif change.kind == "prompt_change":
            self.prompt_at = at
            self.prompt_in = float(change.detail["input_factor"])
            self.prompt_out = float(change.detail["output_factor"])
        else:
            share = float(change.detail["share"])
            new = len(self.p.states) - 1
            rolled: list[list[float]] = []
            for i, row in enumerate(self.p.chain_weights):
                total = sum(row)
                bumped = [w * (1.0 - share) for w in row]
                bumped[new] += share * total
                if i == new:  # the new tool's own row: back to the usual first tools
                    bumped = [*self.p.entry_weights[:new], 0.2 * sum(self.p.entry_weights)]
                rolled.append(bumped)
            self.rolled_chain = [cumulative(row) for row in rolled]
            self.rollout_at = at

    def add_incident(self, inc: Incident) -> None:
        """Schedule an incident in this agent (a newborn one: the agent starts with it)."""
        if inc.newborn:
            self.t = max(self.t, inc.start_s)
        self.incidents.append(inc)
        self.incidents.sort(key=lambda i: i.start_s)
        self.sched.extend(inc.injected)
        self.sched.sort(key=itemgetter(0))

    def add_burst(self, burst: Burst) -> None:
        """Schedule a benign error burst on this agent."""
        self.bursts.append(burst)

    # -- generation ----------------------------------------------------------------------
    def advance(self, until: float, out: list[Record]) -> None:
        """Run the agent up to ``until``; append its records before ``until`` to ``out``."""
        if self.diurnal:
            self._set_slow(self.t)
        while self.t < until:
            self._step()
        buf = self.buf
        if buf:
            cut = len(buf)
            while cut and buf[cut - 1][0] >= until:
                cut -= 1
            if cut:
                out.extend(buf[:cut])
                del buf[:cut]
        sched = self.sched
        while sched and sched[0][0] < until:
            ts, kw = sched.pop(0)
            kw = dict(kw)
            if self.sess.sid:
                kw["session_id"] = self.sess.sid
            out.append((ts, self.idx, kw))
        if self.bursts:
            self.bursts = [b for b in self.bursts if b.end_s >= until]

    def _incident_at(self, t: float) -> Incident | None:
        incs = self.incidents
        while incs and incs[0].end_s <= t:
            incs.pop(0)
        for inc in incs:
            if inc.start_s <= t < inc.end_s:
                return inc
        return None

    def _next_incident_start(self, t: float) -> float:
        return min((i.start_s for i in self.incidents if i.start_s > t), default=math.inf)

    def _set_slow(self, t: float) -> None:
        """Diurnal divisor of gaps at ``t`` (> 1 around the peak, 15:00 UTC by default)."""
        day = (t / 86400.0 - self.peak_hour / 24.0) * 2.0 * math.pi
        self.slow = 1.0 + self.diurnal * math.cos(day)

    def new_session(self, inc: Incident | None) -> None:
        """Start a session (after an idle gap, unless an incident starts now)."""
        rng = self.rng
        p = self.p
        if self.sessions and inc is None:
            idle = exp1(rng) * p.idle_mean / self.slow
            self.t = min(self.t + idle, max(self._next_incident_start(self.t), self.t))
        else:
            gap = exp1(rng) * p.gap_mean
            if inc is None or self.t > inc.start_s:  # at an incident's start: at once
                self.t += gap
        self.sessions += 1
        sid = f"sess-{rng.getrandbits(48):012x}"
        self.sess = p.new_session(rng, sid)
        self.remaining = 1 + int(exp1(rng) * (p.session_mean - 1.0))
        self.step_no = 0
        self.state = len(p.states)  # entry row

    def _step(self) -> None:
        inc = self._incident_at(self.t) if self.incidents else None
        if inc is not None and inc.takes_over:
            if not self.sess.sid:
                self.new_session(inc)
            inc.loop_step(self)
            return
        if self.remaining <= 0:
            self.new_session(inc)
            inc = self._incident_at(self.t) if self.incidents else None
            if inc is not None and inc.takes_over:
                return
        rng = self.rng
        p = self.p
        t = began = self.t
        # 1. the LLM decides (most steps)
        llm_p = p.llm_share if inc is None else inc.llm_share(p.llm_share)
        if rng.random() < llm_p:
            t = self._llm(t, inc)
            if inc is not None and inc.extra_llm_call(rng):
                t = self._llm(t, inc)
        # 2. the tool call
        alt = inc.chain() if inc is not None else None
        if alt is not None:
            chain = alt
        elif t >= self.rollout_at and self.rolled_chain is not None:
            chain = self.rolled_chain
        else:
            chain = self.chain
        row = chain[self.state] if self.state < len(chain) else chain[-1]
        state = bisect.bisect_right(row, rng.random())
        self.state = state
        spec = p.tool_specs[state]
        err_p = spec.error_rate * p.err_mult
        if inc is not None:
            err_p = inc.tool_error_rate(err_p)
        t = self._tool(t, spec, err_p, inc is not None and inc.storm)
        self.step_no += 1
        self.remaining -= 1
        gap = -math.log(1.0 - rng.random()) * p.gap_mean
        self.t = t + gap / self.slow
        if self.incidents:
            # an incident starts with the agent's next step (at once if it began during this
            # one): its label's start is when the first affected event happens, not a
            # moment of the agent's pause before it
            self.t = min(self.t, max(self._next_incident_start(began), t))

    def _llm(self, t: float, inc: Incident | None) -> float:
        rng = self.rng
        p = self.p
        model = self.upgrade_model if t >= self.upgrade_at else p.model
        if rng.random() < 0.12:
            model = p.fleet.secondary_model
        growth = 1.0 + 0.03 * min(self.step_no, 30)  # the prompt grows with the session
        f_in = f_out = 1.0
        if inc is not None:
            model, f_in, f_out = inc.llm_call(t, model)
        if t >= self.prompt_at:
            f_in *= self.prompt_in
            f_out *= self.prompt_out
        tokens_in = min(
            int(p.in_base * growth * f_in * math.exp(0.35 * Z[rng.getrandbits(13)])),
            MAX_INPUT_TOKENS,
        )
        tokens_out = int(p.out_base * f_out * math.exp(0.5 * Z[rng.getrandbits(13)])) + 1
        per_in, per_out, ms_per_out = MODEL_RATES[model]
        latency = 350.0 + 300.0 * rng.random() + tokens_out * ms_per_out
        kw: dict[str, Any] = {
            "agent_id": self.agent_id,
            "fleet": self.fleet_name,
            "session_id": self.sess.sid,
            "action": "chat",
            "kind": "llm",
            "model": model,
            "input_tokens": tokens_in,
            "output_tokens": tokens_out,
            "cost_usd": round(tokens_in * per_in + tokens_out * per_out, 7),
            "latency_ms": round(latency, 1),
        }
        llm_err = 0.004 if inc is None else inc.llm_error_rate
        if rng.random() < llm_err:
            kw["status"] = "error"
            kw["error"] = LLM_ERRORS[int(rng.random() * len(LLM_ERRORS))]
            kw["output_tokens"] = 0
            kw["cost_usd"] = round(tokens_in * per_in, 7)
        self.buf.append((t, self.idx, kw))
        return t + latency / 1000.0 + 0.05 + 0.2 * rng.random()

    def _tool(self, t: float, spec: ToolSpec, err_p: float, storm: bool) -> float:
        rng = self.rng
        p = self.p
        attrs: dict[str, Any] = {}
        target = p.target(spec.name, rng, self.sess, attrs)
        approved: str | None = None
        high = spec.risk in ("high", "critical")
        if high and rng.random() >= self.approve_noise:
            approved = p.approval(spec, rng, target, attrs)
        burst_p = 0.0
        burst_err = ""
        if self.bursts:
            for b in self.bursts:
                if b.tool == spec.name and b.start_s <= t < b.end_s:
                    burst_p, burst_err = b.error_rate, b.error
        for attempt in range(3):
            latency = lognormal(rng, spec.latency_ms, spec.latency_sigma)
            kw: dict[str, Any] = {
                "agent_id": self.agent_id,
                "fleet": self.fleet_name,
                "session_id": self.sess.sid,
                "action": spec.name,
                "target": target,
                "latency_ms": round(latency, 1),
            }
            if spec.kind != "tool":
                kw["kind"] = spec.kind
            if spec.risk != "low":
                kw["risk"] = spec.risk
            if approved is not None:
                kw["approved_by"] = approved
            if attrs:
                kw["attributes"] = attrs
            u = rng.random()
            failed = False
            if burst_p and u < burst_p:
                kw["status"] = "error"
                kw["error"] = burst_err
                failed = True
            elif u < err_p:
                kw["status"] = "error"
                kw["error"] = spec.errors[int(rng.random() * len(spec.errors))]
                failed = True
            elif high and u > 0.998:
                kw["status"] = "denied"
                kw["error"] = "policy: approval expired, re-request approval"
            self.buf.append((t, self.idx, kw))
            t += latency / 1000.0
            if not failed or attempt == 2 or rng.random() >= (0.6 if storm else 0.4):
                break
            t += 1.0 + 3.0 * rng.random()  # back off, then retry the same call
        return t
