"""The unit status: one status with the operator's next step; the first problem found wins. No ops.

`unit_status` returns `(kind, message)` with kind "active", "blocked" or "waiting"; the charm's one
collect-status handler turns it into an ops status. The migration's own verdicts come from the
report's fields (report.py: `finished`, `attention`, `phase`); here is only their order and what
the unit itself adds: a finished migration's last steps, a paused or stopped daemon.
"""

from __future__ import annotations

import time

from ceph_cli import CephError
from daemon import ForeignFileError, ServiceError
from migration import (
    MigrationError,
    StatusReport,
    attention,
    finished,
    journal_backlog,
    phase,
)
from record import Record
from session import NotReadyError, Session, StatusKind

Status = tuple[StatusKind, str]
MAX_MESSAGE = 250


def unit_status(
    session: Session, *, has_source: bool, has_destination: bool, leader: bool = True
) -> Status:
    """What the unit shows now, given which relations exist and whether it leads.

    Every unit runs its own daemon (rbd-mirror shares the images among them); the actions that
    change pools run on the leader, and an active non-leader says so.
    """
    if session.leaving:  # stop/remove: what the unit leaves behind, not the clusters' state
        return "maintenance", session.leaving[:MAX_MESSAGE]
    kind, message = _unit_status(session, has_source=has_source, has_destination=has_destination)
    if kind == "active" and not leader and _runs(session):
        return kind, f"{message} (its daemon replays; actions that change pools: on the leader)"
    return kind, message


def _runs(session: Session) -> bool:
    try:
        return session.daemon_running()
    except ServiceError:
        return False


def _unit_status(session: Session, *, has_source: bool, has_destination: bool) -> Status:
    record = session.record
    ended = _ended(record, session.app, has_source=has_source, has_destination=has_destination)
    if ended:
        return ended
    try:
        config = session.config()
        session.daemon.check_foreign(config.source_cluster_name)
        report = session.report()  # the pools that exist on the destination
        if not report.pools:
            session.workspace()  # none yet: waiting for them
        status = _migration_status(session, report, record)
        if status[0] != "blocked":  # a split brain or an error outranks a pool still missing
            session.workspace()
    except NotReadyError as exc:
        status = exc.kind, exc.message
    except ServiceError as exc:
        return "blocked", f"the service manager does not answer: {exc}"[:MAX_MESSAGE]
    except ForeignFileError as exc:
        return (
            "blocked",
            f"{exc.path} was not written by this charm "
            "(co-located ceph-mon or a ceph client?): deploy to a machine of its own",
        )
    except (CephError, MigrationError) as exc:
        return "blocked", f"cannot read the clusters: {exc}"[:MAX_MESSAGE]
    broker = session.broker_problem()  # after what needs the operator more (split brain, ...)
    if broker and status[0] != "blocked":
        return "blocked", broker
    return status


def _ended(record: Record, app: str, *, has_source: bool, has_destination: bool) -> Status | None:
    """The status of a migration that is over (aborted, or finished), None while it is not."""
    if record.aborted and not record.pools:
        return (
            "active",
            "migration aborted: the source is as it was (no mirroring, no journaling), the "
            "destination pools are empty; run enable-mirroring to start again",
        )
    if record.finished and has_destination and not has_source:
        return (
            "active",
            f"migration finished: juju remove-relation {app}:destination first (ceph-mon "
            "journals its clients' images while it exists), then remove the application",
        )
    if record.finished and not has_destination:
        return (
            "active",
            f"migration finished: juju remove-application {app}, then revoke "
            f"client.{app} on the old cluster",
        )
    return None


def _migration_status(session: Session, report: StatusReport, record: Record) -> Status:
    if not report.split_brain and finished(report):
        return "active", phase(report)
    problem = attention(report)
    if report.split_brain:
        return "blocked", problem[:MAX_MESSAGE]
    service = session.daemon.service
    config = session.config()
    remedy = "run resume (paused)" if record.paused else f"restart or fix rbd-mirror ({service})"
    guard = _journal_guard(report, config.journal_limit_bytes, remedy)
    if guard:
        return "blocked", guard[:MAX_MESSAGE]
    for pools, what in ((record.aborting, "abort"), (record.rolling_back, "rollback")):
        if pools:
            return "blocked", f"{what} of {', '.join(pools)} interrupted: re-run {what}"
    if problem:
        return "blocked", problem[:MAX_MESSAGE]
    down = _down_for(record, config.daemon_down_limit)
    if record.paused:
        return (
            "blocked",
            f"{down}rbd-mirror paused by the pause action: nothing is replayed (the source's "
            "journals grow, or its mirror snapshots pile up); run resume"
            + (", or abort" if down else ""),
        )
    if not session.daemon_running():
        return (
            "blocked",
            f"{down}rbd-mirror daemon not running; it is restarted on the next hook (journalctl "
            f"-u {service})" + ("; or run abort" if down else ""),
        )
    if report.silent_daemon:
        return (
            "blocked",
            f"{down}rbd-mirror runs but no image state is published by a live daemon (down+): "
            f"see journalctl -u {service}" + ("; or run abort" if down else ""),
        )
    return "active", phase(report, lambda: _syncing(session, report))


def _syncing(session: Session, report: StatusReport) -> str:
    """The sync's bytes and ETA ("" when the source's images cannot be read)."""
    progress = session.progress(report)
    return progress.line if progress else ""


def _journal_guard(report: StatusReport, limit: int, remedy: str) -> str:
    """What the journal guard says ("" when the source's journals are fine).

    It fails closed: a pool whose journals cannot be read is named, not taken as fine.
    """
    blind = [f"{p.pool} ({p.journal_error})" for p in report.active if p.journal_error]
    if blind:
        return f"journal guard blind: cannot read the source's journals of {'; '.join(blind)}"
    over = journal_backlog(report, limit)
    if over:
        return f"journal guard: {'; '.join(over)}: {remedy}, or abort"
    return ""


def _down_for(record: Record, limit_minutes: int) -> str:
    """'rbd-mirror down for 42 min (limit 30): ' once past the limit, else ''."""
    if not record.down_since:
        return ""
    minutes = (time.time() - record.down_since) / 60
    if minutes < limit_minutes:
        return ""
    return f"DOWN {minutes:.0f} min (daemon-down-limit {limit_minutes}), nothing is copied: "
