#!/usr/bin/env python3
"""rbd-mirror-migration: event wiring. Nothing here decides anything about the migration.

- Juju's inputs become typed values here: config (`load_config`), relation data (parsed by
  relations.py), action params (inputs.py); the unit's `Record` lives in StoredState.
- `Session` (session.py) is one dispatch's view: workspace, shared reads, the daemon's lifecycle.
- Every "inputs changed" event goes to `_reconcile`; every action runs through `_run_action`,
  whose work is a function of actions.py; the one collect-status handler shows unit_status.py.
"""

from __future__ import annotations

import logging
import socket
from collections.abc import Callable
from typing import Any, TypeVar

import ops
import ops.hookcmds

import actions
from ceph_cli import CephError
from daemon import RbdMirrorDaemon, ServiceError
from inputs import (
    AbortParams,
    CharmConfig,
    DemotePromoteParams,
    EnableMirroringParams,
    NoParams,
    RollbackParams,
    StatusParams,
    TeardownParams,
    VerifyParams,
)
from migration import MigrationError
from record import Record
from relations import (
    DestinationData,
    RelationDataError,
    SourceData,
    parse_destination,
    parse_source,
    sent_request_id,
    source_key_request,
)
from session import NotReadyError, Session
from unit_status import unit_status
from workflow import Log

logger = logging.getLogger(__name__)

SOURCE = "source"
DESTINATION = "destination"
PEERS = "peers"
RECORD_KEY = "record"  # the peer relation's application bag: the migration's facts (JSON)
SEEN_KEY = "seen"  # each unit's peer bag: the pools that unit knows of (JSON)
Params = TypeVar("Params")


def _result(value: Any) -> Any:
    """Action result values: booleans as lowercase words, like every other result."""
    return str(value).lower() if isinstance(value, bool) else value


class _StoredRecord:
    """The unit's `Record` in the charm's StoredState, and the application's in the peer bag.

    Committed at once, not when the dispatch ends: enable-mirroring records its pools before
    its first change, and a hook killed part-way (agent restart, OOM) must not lose that. The
    leader also publishes the migration's facts in the peer relation's application bag, which
    every unit reads over its own (`Record.with_shared`): a new leader inherits them.
    """

    def __init__(self, charm: ops.CharmBase, stored: ops.framework.BoundStoredState):
        self._charm = charm
        self._stored = stored

    def _peers(self) -> ops.Relation | None:
        return self._charm.model.get_relation(PEERS)

    def load(self) -> Record:
        own = Record.from_json(str(self._stored.record))
        relation = self._peers()
        if relation is None:
            return own
        bag = relation.data[self._charm.app].get(RECORD_KEY)
        shared = Record.from_json(bag) if bag else own  # nothing published yet: our own
        seen = [Record.from_json(relation.data[u].get(SEEN_KEY, "")).pools for u in relation.units]
        return own.with_shared(shared, *seen)

    def save(self, record: Record) -> None:
        if self._charm.unit.is_leader():
            record = record.saved_by_leader()
        self._stored.record = record.to_json()
        self._charm.framework.commit()
        self._publish(record)

    def publish(self) -> None:
        """Publish what this unit knows (every hook: a hook that failed dropped its writes)."""
        self._publish(self.load())

    def _publish(self, record: Record) -> None:
        """Every unit: what it knows of, in its own bag; the leader: the record, in the app's.

        Written only when they differ, so no relation-changed churn on the other units.
        """
        relation = self._peers()
        if relation is None:
            return
        mine = relation.data[self._charm.unit]
        if mine.get(SEEN_KEY) != (seen := record.seen_json()):
            mine[SEEN_KEY] = seen
        if self._charm.unit.is_leader():
            app = relation.data[self._charm.app]
            if app.get(RECORD_KEY) != (shared := record.shared_json()):
                app[RECORD_KEY] = shared


def units_that_stay(unit_name: str) -> int | None:
    """Other units of the application that are not being removed (goal-state), or None.

    Relation events cannot tell: while a unit goes, Juju names it as the departing unit in
    every departed hook it runs, whether the unit alone or the whole application goes.
    """
    try:
        goal = ops.hookcmds.goal_state()
    except (ops.hookcmds.Error, OSError, ValueError, KeyError) as exc:
        logger.info("goal-state unavailable (%s): the units that stay are unknown", exc)
        return None
    return sum(1 for name, g in goal.units.items() if name != unit_name and g.status != "dying")


class RbdMirrorMigrationCharm(ops.CharmBase):
    """Migrates RBD pools from a ceph-proxy source to a ceph-mon destination with rbd-mirror."""

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._stored.set_default(record="{}")
        self.session = Session(
            app=self.app.name,
            daemon=RbdMirrorDaemon(
                self.charm_dir / "templates", self.unique_id, f"client.{self.app.name}"
            ),
            records=_StoredRecord(self, self._stored),
            load_config=self._load_config,
            load_relations=self._relation_data,
            progress_file=self.charm_dir / "reports" / "progress.json",
        )
        on = self.on
        for event in (
            on.install,
            on.config_changed,
            on.upgrade_charm,
            on.update_status,
            on[SOURCE].relation_changed,
            on[DESTINATION].relation_joined,
            on[DESTINATION].relation_changed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(on.leader_elected, self._reconcile)
        for event in (
            on[PEERS].relation_created,
            on[PEERS].relation_joined,
            on[PEERS].relation_changed,
            on[PEERS].relation_departed,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(on[SOURCE].relation_broken, self._on_relation_broken)
        framework.observe(on[DESTINATION].relation_broken, self._on_relation_broken)
        framework.observe(on.stop, self._on_leave)
        framework.observe(on.remove, self._on_leave)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.enable_mirroring_action, self._on_enable_mirroring_action)
        framework.observe(on.status_action, self._on_status_action)
        framework.observe(on.demote_promote_action, self._on_demote_promote_action)
        framework.observe(on.teardown_action, self._on_teardown_action)
        framework.observe(on.abort_action, self._on_abort_action)
        framework.observe(on.rollback_action, self._on_rollback_action)
        framework.observe(on.verify_action, self._on_verify_action)
        framework.observe(on.pause_action, self._on_pause_action)
        framework.observe(on.resume_action, self._on_resume_action)

    # --- inputs ----------------------------------------------------------------------------
    @property
    def unique_id(self) -> str:
        """Our name towards ceph-mon: the host name, as the ceph-rbd-mirror charm uses."""
        return socket.gethostname()

    def _load_config(self) -> CharmConfig:
        try:
            return self.load_config(CharmConfig)
        except (ValueError, TypeError) as exc:
            raise NotReadyError("blocked", f"Invalid config: {exc}") from None

    def _relation_data(self) -> tuple[SourceData, DestinationData]:
        """Both relations' data, parsed; NotReadyError with the status while it is incomplete."""
        src_rel, dst_rel = self.model.get_relation(SOURCE), self.model.get_relation(DESTINATION)
        if src_rel is None:
            raise NotReadyError(
                "blocked", "Missing relation: source (relate to ceph-proxy:client)"
            )
        if dst_rel is None:
            raise NotReadyError(
                "blocked", "Missing relation: destination (relate to ceph-mon:rbd-mirror)"
            )
        try:
            source = parse_source(
                (dict(src_rel.data[u]) for u in src_rel.units),
                self.unit.name,
                sent_request_id(src_rel.data[self.unit].get("broker_req")),
            )
            dest = parse_destination(
                (dict(dst_rel.data[u]) for u in dst_rel.units),
                self.unique_id,
                self.unit.name,
                sent_request_id(dst_rel.data[self.unit].get("broker_req")),
            )
        except RelationDataError as exc:
            raise NotReadyError("blocked", str(exc)) from None
        if source is None:
            raise NotReadyError("waiting", "waiting for ceph-proxy to send the source key")
        if dest is None:
            raise NotReadyError("waiting", "waiting for ceph-mon to send the destination key")
        return source, dest

    # --- reconcile -------------------------------------------------------------------------
    def _reconcile(self, _: ops.EventBase) -> None:
        """Bring packages, relation data, files and the daemon in line with every input."""
        self.session.records.publish()  # first: whatever returns early below
        self.session.keep_copies_protected()  # so is the daemon's pre-start step
        try:
            config = self.session.config()
        except NotReadyError as exc:
            logger.warning("not reconciling: %s", exc)
            return
        try:
            self.session.daemon.install()
        except ServiceError as exc:
            logger.error("%s: the packages are checked again on the next hook", exc)
            return
        dst_rel = self.model.get_relation(DESTINATION)
        if dst_rel is not None:
            dst_rel.data[self.unit].update(
                {"unique_id": self.unique_id, "unit-name": self.unit.name}
            )
        src_rel = self.model.get_relation(SOURCE)
        if src_rel is not None:
            src_rel.data[self.unit]["broker_req"] = source_key_request(self.app.name)[1]
        if not self.session.write_daemon_files(config):
            return
        request = self.session.pool_requests(config)
        if dst_rel is not None and request is not None:
            names, body = request
            if dst_rel.data[self.unit].get("broker_req") != body:
                dst_rel.data[self.unit]["broker_req"] = body
                logger.info("asked ceph-mon for pools %s", ", ".join(names))
        self.session.keep_daemon()
        if self.unit.is_leader():  # one unit takes the charm's own mirror snapshots
            self.session.snapshot_if_due()

    # --- leaving ---------------------------------------------------------------------------
    def _on_relation_broken(self, event: ops.RelationBrokenEvent) -> None:
        """Without either cluster the daemon cannot work: stop it, remove that side's files."""
        side = SOURCE if event.relation.name == SOURCE else DESTINATION
        self.session.leave(f"the {side} relation was removed", (side,))

    def _on_leave(self, _: ops.EventBase) -> None:
        """stop/remove: the daemon stopped and disabled, every file this charm wrote removed."""
        self.session.leave(
            "the unit is being removed",
            (SOURCE, DESTINATION),
            unit_goes=True,
            others=units_that_stay(self.unit.name),
        )

    # --- status ----------------------------------------------------------------------------
    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        kind, message = unit_status(
            self.session,
            has_source=self.model.get_relation(SOURCE) is not None,
            has_destination=self.model.get_relation(DESTINATION) is not None,
            leader=self.unit.is_leader(),
        )
        event.add_status(ops.StatusBase.from_name(kind, message))

    # --- actions ---------------------------------------------------------------------------
    def _run_action(
        self,
        event: ops.ActionEvent,
        params_type: type[Params],
        work: Callable[[Session, Params, Log], dict[str, Any]],
        *,
        leader_only: bool = False,
    ) -> None:
        """Typed params, the work (actions.py), then results or `event.fail` with the reason.

        `leader_only`: an action that changes pools runs on the leader alone, so that two units
        never change the same pools at once; `status`, `pause` and `resume` run on any unit.
        """
        params = event.load_params(params_type, errors="fail")
        if leader_only and not self.unit.is_leader():
            event.fail(
                f"{event.handle.kind.removesuffix('_action').replace('_', '-')} changes pools: "
                "run it on the leader unit (marked * in juju status); nothing changed"
            )
            return
        try:
            results = work(self.session, params, event.log)
        except NotReadyError as exc:
            event.fail(f"not ready: {exc.message}")
            return
        except MigrationError as exc:
            if exc.results:
                event.set_results({k: _result(v) for k, v in exc.results.items()})
            event.fail(str(exc))
            return
        except (CephError, ServiceError) as exc:
            event.fail(str(exc))
            return
        event.set_results({k: _result(v) for k, v in results.items()})

    def _on_enable_mirroring_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, EnableMirroringParams, actions.enable_mirroring, leader_only=True)

    def _on_status_action(self, event: ops.ActionEvent) -> None:
        reports_dir = self.charm_dir / "reports"
        self._run_action(
            event, StatusParams, lambda s, p, log: actions.status(s, p, log, reports_dir)
        )

    def _on_demote_promote_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, DemotePromoteParams, actions.demote_promote, leader_only=True)

    def _on_teardown_action(self, event: ops.ActionEvent) -> None:
        reports_dir = self.charm_dir / "reports"
        self._run_action(
            event,
            TeardownParams,
            lambda s, p, log: actions.teardown(s, p, log, reports_dir),
            leader_only=True,
        )

    def _on_abort_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, AbortParams, actions.abort, leader_only=True)

    def _on_rollback_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, RollbackParams, actions.rollback, leader_only=True)

    def _on_verify_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, VerifyParams, actions.verify)

    def _on_pause_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, NoParams, actions.pause)

    def _on_resume_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, NoParams, actions.resume)


if __name__ == "__main__":  # pragma: nocover
    ops.main(RbdMirrorMigrationCharm)
