from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

import pytest

import agentwatch.schemas
from agentwatch.schemas import Anomaly, ControlState
from agentwatch.schemas.export import WIRE_MODELS, export_schemas, render_schemas

COMMITTED = Path(agentwatch.schemas.__file__).parent / "json"


def test_committed_schemas_match_models() -> None:
    rendered = render_schemas()
    assert sorted(rendered) == sorted(p.name for p in COMMITTED.glob("*.json"))
    for name, text in rendered.items():
        committed = (COMMITTED / name).read_text(encoding="utf-8")
        assert committed == text, (
            f"{name} drifted from the model: run `agentwatch schema export {COMMITTED}`"
        )


def test_export_writes_every_model(tmp_path: Path) -> None:
    paths = export_schemas(tmp_path / "out")
    assert {p.stem for p in paths} == set(WIRE_MODELS)
    assert '"agent_id"' in (tmp_path / "out" / "action_event.json").read_text()


def test_control_state_and_anomaly_validate() -> None:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    state = ControlState(agent_id="a", halted=True, updated_at=now, updated_by="rule:x", version=3)
    assert not state.allows("anything")
    back = ControlState.model_validate_json(state.model_dump_json())
    assert back == state
    with pytest.raises(ValueError, match="severity"):
        Anomaly.model_validate_json(
            b'{"anomaly_id":"x","ts":"2026-01-01T00:00:00Z","agent_id":"a","detector":"d",'
            b'"kind":"k","severity":"fatal","score":1,"threshold":1,"observed":1,"baseline":1,'
            b'"summary":"s"}'
        )
