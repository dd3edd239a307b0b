"""``agentwatch approvals list|show|approve|deny``: decide the calls waiting for approval.

:mod:`agentwatch.cli` adds :data:`approvals_app` to the main command. The commands talk to the
worker's control API (:meth:`agentwatch.client.ControlClient.approvals`) through the main
command's client helpers (same URL, token and one-line errors).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

__all__ = ["STATUSES", "approvals_app"]

STATUSES = ("pending", "approved", "denied", "expired", "all")

approvals_app = typer.Typer(
    help="Approvals: calls waiting for a person (list, show, approve, deny).",
    no_args_is_help=True,
)

UrlOpt = Annotated[
    str | None,
    typer.Option("--url", help="Worker API URL (default: AGENTWATCH_API_URL, or `agentwatch up`)."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print the raw JSON answer.")]
ConfigOpt = Annotated[
    Path | None,
    typer.Option("--config", "-c", help="TOML settings file (default ./agentwatch.toml)."),
]
ActorOpt = Annotated[
    str | None,
    typer.Option("--actor", help="Who decides (default $AGENTWATCH_ACTOR, else $USER)."),
]
ReasonOpt = Annotated[str, typer.Option("--reason", "-r", help="Why (recorded in the audit).")]


def _api(config: Path | None, url: str | None) -> Any:
    from agentwatch.cli import _client

    return _client(config, url)


@approvals_app.command("list")
def approvals_list(
    status: Annotated[str, typer.Option(help="pending, approved, denied, expired or all.")] = (
        "pending"
    ),
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Approval requests (pending ones by default), oldest first."""
    from agentwatch.cli import _print_json

    if status not in STATUSES:
        typer.echo(f"agentwatch: unknown status {status!r}: use {', '.join(STATUSES)}", err=True)
        raise typer.Exit(2)
    items = _api(config, url)("approvals", status)["approvals"]
    if as_json:
        _print_json(items)
        return
    if not items:
        typer.echo(f"no {'' if status == 'all' else status + ' '}approvals")
        return
    typer.echo(f"{'REQUEST':32} {'STATUS':8} {'AGENT':24} {'ACTION':24} {'EXPIRES':20} TARGET")
    for item in items:
        target = (item.get("target") or "-")[:60]
        typer.echo(
            f"{item['request_id']:32} {item['status']:8} {item['agent_id']:24} "
            f"{item['action']:24} {item['expires_at'][:19]:20} {target}"
        )


@approvals_app.command("show")
def approvals_show(
    request_id: str, url: UrlOpt = None, as_json: JsonOpt = False, config: ConfigOpt = None
) -> None:
    """One approval request and its decision."""
    from agentwatch.cli import _print_json

    item = _api(config, url)("approval", request_id)
    if as_json:
        _print_json(item)
        return
    for label, key in _SHOWN:
        value = item.get(key)
        typer.echo(f"{label:10} {'-' if value in (None, '') else value}")
    decision = item.get("decision")
    if decision:
        reason = f" ({decision['reason']})" if decision.get("reason") else ""
        typer.echo(
            f"{'decision':10} {decision['outcome']} by {decision['decided_by']} via "
            f"{decision['via']} at {decision['decided_at']}{reason}"
        )


_SHOWN = (
    ("request", "request_id"),
    ("status", "status"),
    ("agent", "agent_id"),
    ("fleet", "fleet"),
    ("action", "action"),
    ("risk", "risk"),
    ("target", "target"),
    ("rule", "requirement"),
    ("asked", "ts"),
    ("expires", "expires_at"),
)


def _decide(
    op: str,
    request_id: str,
    reason: str,
    actor: str | None,
    url: str | None,
    config: Path | None,
    as_json: bool,
) -> None:
    from agentwatch.cli import _actor, _print_json
    from agentwatch.client import ApiError

    api = _api(config, url)
    try:
        doc: Any = api.client.approval_op(op, request_id, actor=_actor(actor), reason=reason)
    except ApiError as exc:
        message = str(exc) if exc.status in (404, 409) else api._describe(exc)
        typer.echo(f"agentwatch: {message}", err=True)
        raise typer.Exit(1) from None
    if as_json:
        _print_json(doc)
        return
    typer.echo(
        f"{doc['request_id']}: {doc['outcome']} by {doc['decided_by']} "
        f"({doc['agent_id']} {doc['action']})"
    )


@approvals_app.command("approve")
def approvals_approve(
    request_id: str,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Approve a waiting call: it runs, and its event carries you as approved_by."""
    _decide("approve", request_id, reason, actor, url, config, as_json)


@approvals_app.command("deny")
def approvals_deny(
    request_id: str,
    reason: ReasonOpt = "",
    actor: ActorOpt = None,
    url: UrlOpt = None,
    as_json: JsonOpt = False,
    config: ConfigOpt = None,
) -> None:
    """Deny a waiting call: the agent gets ApprovalDenied and the tool does not run."""
    _decide("deny", request_id, reason, actor, url, config, as_json)
