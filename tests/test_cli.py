"""The ``agentwatch`` command's key handling, run as a subprocess (no broker needed)."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

from agentwatch.schemas.signing import ControlSigner, key_id_of, load_public_key
from tests.fixtures import BAD_RULES


def run(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("AGENTWATCH_")}
    clean.update(env)
    return subprocess.run(
        [sys.executable, "-m", "agentwatch.cli", *args],
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_keys_generate_makes_a_pair_once(tmp_path: Path) -> None:
    done = run("keys", "generate", str(tmp_path / "keys"))
    assert done.returncode == 0, done.stderr
    private, public = tmp_path / "keys" / "control.key", tmp_path / "keys" / "control.pub"
    assert stat.S_IMODE(private.stat().st_mode) == 0o600
    key_id = ControlSigner.from_file(private).key_id
    assert key_id_of(load_public_key(str(public))) == key_id
    assert f"made control key {key_id}" in done.stdout
    assert f"AGENTWATCH_CONTROL_SIGNING_KEY_FILE={private}" in done.stdout
    assert f"AGENTWATCH_CONTROL_VERIFY_KEYS={public}" in done.stdout
    again = run("keys", "generate", str(tmp_path / "keys"))
    assert again.returncode == 0 and f"kept the existing control key {key_id}" in again.stdout
    assert ControlSigner.from_file(private).key_id == key_id


def test_worker_refuses_to_start_without_a_signing_key(tmp_path: Path) -> None:
    done = run(
        "worker",
        AGENTWATCH_DATA_DIR=str(tmp_path),
        AGENTWATCH_KAFKA_BOOTSTRAP="127.0.0.1:1",  # never reached
    )
    assert done.returncode == 2
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in done.stderr
    assert lines[0].startswith("agentwatch worker: no control signing key")
    assert "agentwatch keys generate DIR" in lines[0]


def test_worker_refuses_a_key_file_others_can_read(tmp_path: Path) -> None:
    assert run("keys", "generate", str(tmp_path)).returncode == 0
    os.chmod(tmp_path / "control.key", 0o640)
    done = run(
        "worker",
        AGENTWATCH_CONTROL_SIGNING_KEY_FILE=str(tmp_path / "control.key"),
        AGENTWATCH_KAFKA_BOOTSTRAP="127.0.0.1:1",
    )
    assert done.returncode == 2 and "chmod 600" in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_worker_refuses_a_bad_rules_file_one_line_per_problem(tmp_path: Path) -> None:
    assert run("keys", "generate", str(tmp_path)).returncode == 0
    rules = tmp_path / "rules.yml"
    rules.write_text(BAD_RULES)
    done = run(
        "worker",
        AGENTWATCH_CONTROL_SIGNING_KEY_FILE=str(tmp_path / "control.key"),
        AGENTWATCH_RULES_FILE=str(rules),
        AGENTWATCH_KAFKA_BOOTSTRAP="127.0.0.1:1",  # never reached: the rules come first
    )
    assert done.returncode == 2, done.stderr
    assert "Traceback" not in done.stderr and "Kafka" not in done.stderr
    assert done.stderr.strip().splitlines() == [
        f"{rules}: group 'g' rule 'Budget': key 'params.max_actons': unknown parameter of "
        "detector 'budget'; did you mean 'max_actions'?",
        f"{rules}: group 'g' rule 'Loop': key 'params.min_run': wrong type: expected an "
        "integer, found 'five' (a string)",
        f"agentwatch: not started: 2 problem(s) in {rules}; fix them (check with: agentwatch "
        f"rules validate {rules}) or unset AGENTWATCH_RULES_FILE",
    ]


def test_up_refuses_a_bad_rules_file_before_starting_a_broker(tmp_path: Path) -> None:
    rules = tmp_path / "rules.yml"
    rules.write_text(
        "groups:\n  - name: g\n    rules:\n      - {alert: A, detector: runaway_lop}\n"
    )
    done = run("up", AGENTWATCH_DATA_DIR=str(tmp_path / "data"), AGENTWATCH_RULES_FILE=str(rules))
    assert done.returncode == 2, done.stderr
    lines = done.stderr.strip().splitlines()
    assert lines[0] == (
        f"{rules}: group 'g' rule 'A': key 'detector': unknown detector: expected a registered "
        "detector, found 'runaway_lop' (a string); did you mean 'runaway_loop'?"
    )
    assert len(lines) == 2 and lines[1].startswith("agentwatch: not started: 1 problem(s)")
    assert "is up" not in done.stderr and "Traceback" not in done.stderr
