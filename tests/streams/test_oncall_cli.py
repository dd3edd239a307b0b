"""`agentwatch silences|anomalies|audit|incidents show` against a live worker."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from agentwatch.config import Settings
from agentwatch.streams.app import create_app
from agentwatch.streams.runner import running_app
from tests.streams.test_cli_control import cli
from tests.streams.test_pipeline import produce
from tests.streams.test_response import risky, rules_file, wait_for

pytestmark = pytest.mark.integration


async def test_cli_silences_a_fleet_then_shows_anomalies_evidence_and_audit(
    settings: Settings, tmp_path: Path
) -> None:
    worker = create_app(settings.replace(rules_file=rules_file(tmp_path)))
    async with running_app(worker):
        url = worker.web_url
        code, out, err = await cli(url, "silences", "add", "--fleet", "support", "--duration", "1h")
        assert code == 2 and out == ""
        assert err.strip() == "agentwatch: say why with --comment"
        code, out, err = await cli(
            url, "silences", "add", "--fleet", "support", "--duration", "1h", "-m", "window"
        )
        assert code == 0, err
        silence_id = out.split()[0]
        assert silence_id.startswith("sil-") and 'fleet="support"' in out
        code, out, _ = await cli(url, "silences", "list")
        lines = out.splitlines()
        assert lines[0].split()[:3] == ["SILENCE", "STATUS", "STARTS"]
        assert lines[1].startswith(f"{silence_id}  active")

        await produce(worker.settings, [risky(1, "cli-s")])
        history = worker.response.history
        assert history is not None
        await wait_for(lambda: len(history.anomalies("cli-s")) == 1)
        code, out, err = await cli(
            url, "anomalies", "--agent", "cli-s", "--since", "2025-06-01T00:00:00Z"
        )
        assert code == 0, err
        table, evidence = out.split("\n\n")
        assert table.splitlines()[0].split()[:4] == ["TIME", "AGENT", "RULE", "SEVERITY"]
        assert "cli-s" in table and silence_id in table and "Unapproved" in table
        assert evidence.splitlines()[0].split()[:3] == ["ANOMALY", "EVENT", "HELD"]
        assert "cli-s-1  yes" in evidence and "drop_table" in evidence
        code, out, _ = await cli(url, "anomalies", "--since", "2026-05-02T00:00:00Z")
        assert code == 0 and out.strip() == "no anomalies recorded"  # its event time is May 1
        code, out, _ = await cli(url, "anomalies", "--json")
        doc = json.loads(out)
        assert [a["silenced_by"] for a in doc["anomalies"]] == [[silence_id]]

        code, out, _ = await cli(url, "silences", "expire", silence_id)
        assert code == 0 and f"{silence_id}: expired" in out
        await produce(worker.settings, [risky(2, "cli-s")])
        await wait_for(lambda: len(worker.response.incidents_list()) == 1)
        incident_id = worker.response.incidents_list()[0].incident_id
        code, out, err = await cli(url, "incidents", "show", incident_id)
        assert code == 0, err
        assert out.startswith(f"incident {incident_id} [open, critical]")
        assert "control: running; revoked: drop_table" in out
        sections = out.split("\n\n")
        anomalies = next(s for s in sections if s.startswith("ANOMALIES"))
        assert "OBSERVED" in anomalies and "THRESHOLD" in anomalies
        assert len(anomalies.splitlines()) == 3  # title, header, the unsilenced anomaly
        evidence = next(s for s in sections if s.startswith("EVIDENCE"))
        assert "cli-s-2  yes" in evidence
        history_text = next(s for s in sections if s.startswith("CONTROL AND AUDIT"))
        assert "suppressed" in history_text and "incident_open" in history_text
        code, out, _ = await cli(url, "incidents", "show", incident_id, "--json")
        shown = json.loads(out)
        assert shown["anomalies"][0]["evidence_events"][0]["event"]["event_id"] == "cli-s-2"
        code, out, _ = await cli(url, "audit", "--agent", "cli-s")
        assert out.splitlines()[0].split()[:3] == ["TIME", "AGENT", "ACTION"]
        assert "revoke" in out and "suppressed" in out
        code, out, _ = await cli(url, "audit", "--json")
        actions = {e["action"] for e in json.loads(out)}
        assert {"silence_create", "silence_expire", "suppressed", "revoke"} <= actions
