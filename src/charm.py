#!/usr/bin/env python3
"""rbd-mirror-migration: event wiring. The work is in daemon.py, ceph_cli.py and migration.py.

Every action runs through `_run_action`: typed params, the workspace (config, relations, both
cluster clients, the pools), the workflow call, then results or `event.fail`. What the clusters
cannot tell (what was set up, torn down, paused) is the unit's `Record` (record.py).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import ops

import migration
from ceph_cli import CephClient, CephError, PoolInfo, scrub
from daemon import DaemonFiles, ForeignFileError, RbdMirrorDaemon, ServiceError, service_name
from inputs import (
    CharmConfig,
    DemotePromoteParams,
    EnableMirroringParams,
    NoParams,
    StatusParams,
    TeardownParams,
)
from migration import MigrationError, Options, PeerSpec
from record import Record
from relations import (
    DestinationData,
    PoolRequest,
    RelationDataError,
    SourceData,
    broker_request,
    parse_destination,
    parse_source,
    sent_request_id,
    source_key_request,
)

logger = logging.getLogger(__name__)

SOURCE = "source"
DESTINATION = "destination"
MAX_LISTED_RESULTS = 50  # items of a list result; the rest is counted
MAX_IMAGE_DETAIL = 100  # images in `status verbose=true` results; all of them go to a file
NEXT_STEPS = (
    "1. juju remove-relation {app}:destination ceph-mon:rbd-mirror (while it exists ceph-mon "
    "tells every client to create journaled images). "
    "2. juju remove-relation ceph-proxy:client for nova-compute, glance and cinder-ceph. "
    "3. juju relate ceph-mon:client with nova-compute:ceph, glance:ceph, cinder-ceph:ceph. "
    "4. Restore the cloud: activate images, attach volumes, start instances, start the APIs. "
    "5. juju remove-application {app} (its keyrings and confs go with it). "
    "6. Revoke this charm's key on the old cluster (ceph-proxy's broker cannot delete keys): "
    "`ceph auth del client.{app}` with the source's admin key. The source's images stay "
    "demoted (read-only) with journaling and pool-mode mirroring: see the README before "
    "reusing them."
)
Params = TypeVar("Params")


class NotReadyError(Exception):
    """Inputs are missing or wrong; `status` is what the unit should show."""

    def __init__(self, status: ops.StatusBase):
        self.status = status
        super().__init__(status.message)


@dataclasses.dataclass(frozen=True)
class Workspace:
    """Everything derived from config and relations that the actions and the status need."""

    config: CharmConfig
    source: CephClient
    destination: CephClient
    pools: tuple[str, ...]  # the pools this run works on
    all_pools: tuple[str, ...]  # every pool being migrated
    peer: PeerSpec


def _result(value: Any) -> Any:
    """Action result values: booleans as lowercase words, like every other result."""
    return str(value).lower() if isinstance(value, bool) else value


class RbdMirrorMigrationCharm(ops.CharmBase):
    """Migrates RBD pools from a ceph-proxy source to a ceph-mon destination with rbd-mirror."""

    _stored = ops.StoredState()

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self._stored.set_default(record="{}")
        self.daemon = RbdMirrorDaemon(self.charm_dir / "templates")
        self._report: migration.StatusReport | None = None
        self._ws: Workspace | NotReadyError | None = None
        self._pair: tuple[CephClient, CephClient] | None = None
        self._running: bool | None = None  # the service manager's answer, once per dispatch
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
        framework.observe(on[SOURCE].relation_broken, self._on_relation_broken)
        framework.observe(on[DESTINATION].relation_broken, self._on_relation_broken)
        framework.observe(on.stop, self._on_leave)
        framework.observe(on.remove, self._on_leave)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.enable_mirroring_action, self._on_enable_mirroring_action)
        framework.observe(on.status_action, self._on_status_action)
        framework.observe(on.demote_promote_action, self._on_demote_promote_action)
        framework.observe(on.teardown_action, self._on_teardown_action)
        framework.observe(on.pause_action, self._on_pause_action)
        framework.observe(on.resume_action, self._on_resume_action)

    # --- inputs ----------------------------------------------------------------------------
    @property
    def unique_id(self) -> str:
        """Our name towards ceph-mon: the host name, as the ceph-rbd-mirror charm uses."""
        return socket.gethostname()

    @property
    def record(self) -> Record:
        """What this unit remembers of the migration (record.py says why each field)."""
        return Record.from_json(str(self._stored.record))

    def _save(self, record: Record) -> None:
        self._stored.record = record.to_json()

    def _config(self) -> CharmConfig:
        try:
            config = self.load_config(CharmConfig)
        except (ValueError, TypeError) as exc:
            raise NotReadyError(ops.BlockedStatus(f"Invalid config: {exc}")) from None
        was = self.record.source_cluster_name
        if was and was != config.source_cluster_name and not self.record.finished:
            raise NotReadyError(
                ops.BlockedStatus(
                    f"source-cluster-name changed mid-migration: mirroring was set up from "
                    f"'{was}' (its peers and the daemon's files use that name): set it back"
                )
            )
        return config

    def _relation_data(self) -> tuple[SourceData, DestinationData]:
        src_rel, dst_rel = self.model.get_relation(SOURCE), self.model.get_relation(DESTINATION)
        if src_rel is None:
            raise NotReadyError(
                ops.BlockedStatus("Missing relation: source (relate to ceph-proxy:client)")
            )
        if dst_rel is None:
            raise NotReadyError(
                ops.BlockedStatus("Missing relation: destination (relate to ceph-mon:rbd-mirror)")
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
            raise NotReadyError(ops.BlockedStatus(str(exc))) from None
        if source is None:
            raise NotReadyError(ops.WaitingStatus("waiting for ceph-proxy to send the source key"))
        if dest is None:
            raise NotReadyError(
                ops.WaitingStatus("waiting for ceph-mon to send the destination key")
            )
        for side, broker in (("ceph-proxy", source.broker), ("ceph-mon", dest.broker)):
            if broker and broker.exit_code != 0:
                what = "set our key's caps" if side == "ceph-proxy" else "create the pools"
                raise NotReadyError(
                    ops.BlockedStatus(f"{side} could not {what}: {scrub(broker.stderr)[:200]}")
                )
        return source, dest

    def _clients(self, config: CharmConfig) -> tuple[CephClient, CephClient]:
        """The source and destination clients, one pair per dispatch."""
        if self._pair is None:
            timeout = float(config.command_timeout)
            self._pair = (
                CephClient(config.source_cluster_name, self.app.name, timeout=timeout),
                CephClient("ceph", f"rbd-mirror.{self.unique_id}", timeout=timeout),
            )
        return self._pair

    def _workspace(self, subset: str | None = None) -> Workspace:
        """Config, relations and pools; raise NotReadyError with the status to show.

        Built once per dispatch, so that its clients remember a cluster that did not answer.
        """
        if self._ws is None:
            try:
                self._ws = self._build_workspace()
            except NotReadyError as exc:
                self._ws = exc
        if isinstance(self._ws, NotReadyError):
            raise self._ws
        if subset is None:
            return self._ws
        pools = migration.narrowed(list(self._ws.all_pools), subset)
        return dataclasses.replace(self._ws, pools=tuple(pools))

    def _build_workspace(self) -> Workspace:
        config = self._config()
        _, dest_data = self._relation_data()
        src, dst = self._clients(config)
        try:
            pools = self._pools(config, src, dst, dest_data)
        except MigrationError as exc:
            raise NotReadyError(ops.BlockedStatus(str(exc))) from None
        record = self.record
        dropped = sorted(set(record.pools) - set(pools) - set(record.torn_down))
        if dropped and not record.finished:
            raise NotReadyError(
                ops.BlockedStatus(
                    f"config pools leaves out {', '.join(dropped)}: enable-mirroring set "
                    "them up and they are not torn down; add them back"
                )
            )
        missing = [p for p in pools if p not in dest_data.pools]
        if missing:
            raise NotReadyError(
                ops.WaitingStatus(f"waiting for destination pools: {', '.join(missing)}")
            )
        peer = PeerSpec(
            client_name=f"client.{self.app.name}", site_name=config.source_cluster_name
        )
        return Workspace(config, src, dst, tuple(pools), tuple(pools), peer)

    def _pools(
        self, config: CharmConfig, src: CephClient, dst: CephClient, dest: DestinationData
    ) -> list[str]:
        """The pools being migrated: from the source, or without it (the disaster path)."""
        try:
            return migration.select_pools(config.pool_list, src.pools(), None)
        except CephError as exc:
            logger.warning("source unreachable, pools from config, record or destination: %s", exc)
            try:
                return migration.pools_without_source(
                    config.pool_list,
                    self.record.pools,
                    dst,
                    dest.pools,
                    config.source_cluster_name,
                    None,
                )
            except MigrationError as why:
                raise MigrationError(f"source unreachable ({exc}); {why}") from None

    # --- reconcile -------------------------------------------------------------------------
    def _reconcile(self, _: ops.EventBase) -> None:
        """Bring packages, relation data, files and the daemon in line with every input."""
        try:
            config = self._config()
        except NotReadyError as exc:
            logger.warning("not reconciling: %s", exc)
            return
        try:
            self.daemon.install()
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
        try:
            source, dest = self._relation_data()
        except NotReadyError as exc:
            logger.info("not configuring the daemon yet: %s", exc)
            return
        files = DaemonFiles(
            unique_id=self.unique_id,
            destination_mon_hosts=dest.mon_hosts,
            destination_key=dest.key,
            source_cluster=config.source_cluster_name,
            source_client=f"client.{self.app.name}",
            source_mon_hosts=source.mon_hosts,
            source_key=source.key,
            tuning=config.daemon_tuning,
        )
        try:
            self.daemon.write(files)  # marks a restart pending on disk first if anything changes
        except ForeignFileError as exc:
            logger.error("%s", exc)
            return
        self._request_pools(config)
        self._run_daemon()

    def _request_pools(self, config: CharmConfig) -> None:
        """Ask ceph-mon to create each pool to migrate, as it is on the source."""
        dst_rel = self.model.get_relation(DESTINATION)
        src, _ = self._clients(config)
        try:
            source_pools = src.pools()
            names = migration.select_pools(config.pool_list, source_pools, None)
        except (CephError, MigrationError) as exc:
            logger.warning("cannot request destination pools yet: %s", exc)
            return
        _, body = broker_request(_pool_requests(names, source_pools, config.pool_replicas))
        if dst_rel is not None and dst_rel.data[self.unit].get("broker_req") != body:
            dst_rel.data[self.unit]["broker_req"] = body
            logger.info("asked ceph-mon for pools %s", ", ".join(names))

    def _run_daemon(self) -> None:
        """Keep the daemon running, restarted after new files, unless paused or finished."""
        record = self.record
        if record.paused or record.finished:
            self._stop_daemon_if_running("paused" if record.paused else "migration finished")
            return
        try:
            ws = self._workspace()
            report = self._status_report(ws)
        except (NotReadyError, CephError, MigrationError, ServiceError) as exc:
            logger.info("migration state unknown (%s): keeping the daemon running", exc)
        else:
            if migration.finished(report):
                self._save(record.tore_down(list(ws.all_pools), finished=True))
                self._stop_daemon_if_running("every migrated pool is torn down")
                return
        try:
            running = self._daemon_running()
            if not running:
                logger.warning("rbd-mirror daemon is not running: starting it")
            if self.daemon.restart_pending() or not running:
                self.daemon.start(self.unique_id, restart=True)
                self.daemon.restarted()
                self._forget_reads()
        except ServiceError as exc:
            logger.error("%s (a restart stays pending)", exc)

    def _stop_daemon_if_running(self, why: str) -> None:
        try:
            if self._daemon_running():
                logger.info("stopping the rbd-mirror daemon: %s", why)
                self.daemon.stop(self.unique_id)
                self._forget_reads()
        except ServiceError as exc:
            logger.error("%s", exc)

    def _forget_reads(self) -> None:
        """After a start or stop, the daemon's state and the report are read again."""
        self._report, self._running = None, None

    def _daemon_running(self) -> bool:
        """Whether the daemon runs: asked once per dispatch; start and stop forget the answer."""
        if self._running is None:
            self._running = self.daemon.running(self.unique_id)
        return self._running

    def _status_report(self, ws: Workspace) -> migration.StatusReport:
        if self._report is None:
            self._report = migration.status(
                ws.source,
                ws.destination,
                ws.all_pools,
                daemon_running=self._daemon_running(),
                workers=ws.config.max_workers,
                callouts=True,
                recorded_torn_down=self.record.torn_down,
            )
        return self._report

    # --- leaving ---------------------------------------------------------------------------
    def _on_relation_broken(self, event: ops.RelationBrokenEvent) -> None:
        """Without either cluster the daemon cannot work: stop it, remove that side's files."""
        side = SOURCE if event.relation.name == SOURCE else DESTINATION
        self._stop_and_disable(f"the {side} relation was removed")
        self._remove_files((side,))

    def _on_leave(self, _: ops.EventBase) -> None:
        """stop/remove: the daemon stopped and disabled, every file this charm wrote removed."""
        self._stop_and_disable("the unit is being removed")
        self._remove_files((SOURCE, DESTINATION))

    def _stop_and_disable(self, why: str) -> None:
        """Whether it runs or not: an enabled unit would start again at the next boot."""
        logger.info("stopping and disabling the rbd-mirror daemon: %s", why)
        try:
            self.daemon.stop(self.unique_id)
        except ServiceError as exc:
            logger.error("%s", exc)
        self._forget_reads()

    def _remove_files(self, sides: tuple[str, ...]) -> None:
        removed = self.daemon.remove_files(self.unique_id, f"client.{self.app.name}", sides)
        if removed:
            logger.info("removed %s", ", ".join(removed))

    # --- status ----------------------------------------------------------------------------
    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        event.add_status(self._unit_status())

    def _unit_status(self) -> ops.StatusBase:
        """One status, with the next step; the first problem found wins."""
        record = self.record
        app = self.app.name
        destination = self.model.get_relation(DESTINATION)
        if record.finished and destination is not None and not self.model.get_relation(SOURCE):
            return ops.ActiveStatus(
                f"migration finished: juju remove-relation {app}:destination first (ceph-mon "
                "journals its clients' images while it exists), then remove the application"
            )
        if record.finished and destination is None:
            return ops.ActiveStatus(
                f"migration finished: juju remove-application {app}, then revoke "
                f"client.{app} on the old cluster"
            )
        try:
            config = self._config()
            self.daemon.check_foreign(config.source_cluster_name)
            report = self._status_report(self._workspace())
        except NotReadyError as exc:
            return exc.status
        except ServiceError as exc:
            return ops.BlockedStatus(f"the service manager does not answer: {exc}"[:250])
        except ForeignFileError as exc:
            return ops.BlockedStatus(
                f"{exc.path} was not written by this charm "
                "(co-located ceph-mon or a ceph client?): deploy to a machine of its own"
            )
        except (CephError, MigrationError) as exc:
            return ops.BlockedStatus(f"cannot read the clusters: {exc}"[:250])
        try:
            return self._migration_status(report, record)
        except ServiceError as exc:
            return ops.BlockedStatus(f"the service manager does not answer: {exc}"[:250])

    def _migration_status(self, report: migration.StatusReport, record: Record) -> ops.StatusBase:
        if not report.split_brain and migration.finished(report):
            return ops.ActiveStatus(migration.phase(report))
        problem = migration.attention(report)
        if problem:
            return ops.BlockedStatus(problem[:250])
        if record.paused:
            return ops.BlockedStatus(
                "rbd-mirror paused by the pause action: nothing is replayed and the source's "
                "journals grow; run resume"
            )
        if not self._daemon_running():
            return ops.BlockedStatus(
                "rbd-mirror daemon not running; it is restarted on the next hook (journalctl "
                f"-u {service_name(self.unique_id)})"
            )
        if report.silent_daemon:
            return ops.BlockedStatus(
                "rbd-mirror runs but no image state is published by a live daemon (down+): "
                f"see journalctl -u {service_name(self.unique_id)}"
            )
        return ops.ActiveStatus(migration.phase(report))

    # --- actions ---------------------------------------------------------------------------
    def _run_action(
        self,
        event: ops.ActionEvent,
        params_type: type[Params],
        work: Callable[[Params, Workspace, Options], dict[str, Any]],
        *,
        changes_pools: bool = True,
    ) -> None:
        """Params, workspace, the work, then results or `event.fail` with the reason.

        An action that changes pools refuses while any image of any migrated pool is primary
        on both clusters, also outside the subset it was asked to work on.
        """
        params = event.load_params(params_type, errors="fail")
        try:
            ws = self._workspace(getattr(params, "pools", None))
            opts = Options(
                workers=ws.config.max_workers,
                dry_run=bool(getattr(params, "dry_run", False)),
                log=event.log,
                torn_down=frozenset(self.record.torn_down),
            )
            if changes_pools and ws.pools != ws.all_pools and not opts.dry_run:
                self._refuse_split_brain(ws, opts)
            results = work(params, ws, opts)
        except NotReadyError as exc:
            event.fail(f"not ready: {exc.status.message}")
            return
        except (MigrationError, CephError, ServiceError) as exc:
            event.fail(str(exc))
            return
        event.set_results({k: _result(v) for k, v in results.items()})

    def _refuse_split_brain(self, ws: Workspace, opts: Options) -> None:
        report = self._status_report(ws)
        if report.split_brain:
            raise MigrationError(
                migration.split_brain_advice(report.split_brain, ws.peer.site_name)
            )

    def _on_enable_mirroring_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, EnableMirroringParams, self._enable_mirroring)

    def _enable_mirroring(
        self, params: EnableMirroringParams, ws: Workspace, opts: Options
    ) -> dict[str, Any]:
        record = self.record
        if record.finished and not params.restart:
            raise MigrationError(
                "the migration is finished (torn down), nothing changed: enabling mirroring "
                "again would journal the source's images and re-arm the daemon. To start a "
                "new migration on purpose, re-run with restart=true"
            )
        opts.log(
            f"{'dry run: ' if opts.dry_run else ''}enabling mirroring of {', '.join(ws.pools)}"
        )
        with ThreadPoolExecutor(max_workers=1) as probe_exec:
            # The probe waits about a second for the mons to commit a blocklist entry: it runs
            # alongside the work. It adds a 1-second entry, so not in a dry run.
            probe = None if opts.dry_run else probe_exec.submit(ws.source.can_blocklist)
            results = migration.enable_mirroring(
                ws.source, ws.destination, ws.pools, ws.peer, opts, restart=params.restart
            )
            if not opts.dry_run:
                if params.restart:
                    record = record.restarted_migration()
                self._save(record.enabled(list(ws.pools), ws.config.source_cluster_name))
            try:
                can_blocklist = None if probe is None else probe.result()
            except CephError as exc:
                raise MigrationError(
                    f"mirroring is enabled, but the source key check failed: {exc}"
                ) from None
        if can_blocklist is False:
            opts.log(
                "WARNING: the source key cannot blocklist, so a restarted rbd-mirror cannot take "
                "over its own image locks; ceph-proxy has not applied this charm's key request "
                "(mon/osd 'profile rbd'). Mirroring runs, but fix this before relying on it."
            )
        return {
            "dry-run": opts.dry_run,
            "source-key-can-blocklist": str(can_blocklist).lower(),  # "none" in a dry run
            "pools": json.dumps(
                {
                    r.pool: {"images": r.images, "changes": r.changes, "peer-uuid": r.peer_uuid}
                    for r in results
                }
            ),
            "changes": sum(len(r.changes) for r in results),
            "images": sum(r.images for r in results),
        }

    def _on_status_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, StatusParams, self._status, changes_pools=False)

    def _status(self, params: StatusParams, ws: Workspace, opts: Options) -> dict[str, Any]:
        report = migration.status(
            ws.source,
            ws.destination,
            ws.pools,
            daemon_running=self._daemon_running(),
            workers=opts.workers,
            callouts=True,
            recorded_torn_down=opts.torn_down,
        )
        if ws.pools == ws.all_pools:
            self._report = report  # the unit status reuses it
        reasons = report.reasons
        results: dict[str, Any] = {
            "phase": migration.phase(report),
            "ready-for-cutover": report.ready,
            "source-reachable": report.source_answers,
            "split-brain": json.dumps(report.split_brain[:MAX_LISTED_RESULTS]),
            "split-brain-count": len(report.split_brain),
            "reasons": json.dumps(reasons[:MAX_LISTED_RESULTS]),
            "reasons-count": len(reasons),
            "images": report.total,
            "replaying": report.replaying,
            "daemon-errors": json.dumps(report.daemon_errors[:MAX_LISTED_RESULTS]),
        }
        pools = {p.pool: p.as_dict() for p in report.pools}
        if report.split_brain:
            results["split-brain-advice"] = migration.split_brain_advice(
                report.split_brain, ws.peer.site_name
            )
        if params.verbose:
            results.update(self._image_detail(report, pools))
        results["pools"] = json.dumps(pools)
        return results

    def _image_detail(self, report: migration.StatusReport, pools: dict) -> dict[str, Any]:
        """Per-image detail: MAX_IMAGE_DETAIL images in the results, all of them in a file.

        A hook tool takes at most 128 KiB in one argument: 1000 images would not fit.
        """
        images = sorted(
            (i for p in report.pools for i in p.images),
            key=lambda i: (i.caught_up, i.pool, i.name),
        )
        for image in images[:MAX_IMAGE_DETAIL]:
            pools[image.pool].setdefault("image-status", []).append(image.as_dict())
        path = self.charm_dir / "reports" / "status-verbose.json"
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps([i.as_dict() for i in images], indent=1))
        return {
            "image-status-shown": min(len(images), MAX_IMAGE_DETAIL),
            "image-status-total": len(images),
            "image-status-file": str(path),
        }

    def _on_demote_promote_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, DemotePromoteParams, self._demote_promote)

    def _demote_promote(
        self, params: DemotePromoteParams, ws: Workspace, opts: Options
    ) -> dict[str, Any]:
        result = migration.demote_promote(
            ws.source,
            ws.destination,
            ws.pools,
            opts,
            timeout=params.timeout,
            force=params.force,
            daemon_running=self._daemon_running(),
            ignore_watchers=params.ignore_watchers,
            source_cluster=ws.peer.site_name,
        )
        if result.report is not None and ws.pools == ws.all_pools:
            self._report = result.report  # the unit status reuses the verification's reads
        return {
            "demoted": json.dumps(result.demoted),
            "promoted": json.dumps(result.promoted),
            "attempts": result.attempts,
            "seconds": f"{result.seconds:.1f}",
            "forced": result.forced,
            "next": "teardown force=true (the source is lost)" if result.forced else "teardown",
        }

    def _on_teardown_action(self, event: ops.ActionEvent) -> None:
        self._run_action(event, TeardownParams, self._teardown)

    def _teardown(self, params: TeardownParams, ws: Workspace, opts: Options) -> dict[str, Any]:
        result = migration.teardown(
            ws.source, ws.destination, ws.pools, ws.peer, opts, force=params.force
        )
        stop = False
        if not opts.dry_run:
            record = self.record.tore_down(list(ws.pools), finished=False)
            report = migration.status(
                ws.source,
                ws.destination,
                ws.all_pools,
                daemon_running=True,
                workers=opts.workers,
                recorded_torn_down=record.torn_down,
            )
            stop = migration.finished(report)
            self._save(record.tore_down([], finished=stop))
            if stop:
                opts.log("every migrated pool is torn down: stopping the rbd-mirror daemon")
                try:
                    self.daemon.stop(self.unique_id)
                except ServiceError as exc:  # the teardown itself is done: say so
                    opts.log(f"WARNING: {exc}; the next hook stops it")
                    stop = False
                self._forget_reads()
        return {
            "dry-run": opts.dry_run,
            "changes": json.dumps(result.changes),
            "order": ",".join(result.order),
            "peers-removed": json.dumps(result.peers_removed),
            "peers-removed-by-omap": json.dumps(result.peers_removed_by_omap),
            "journaling-removed": len(result.journaling_removed),
            "daemon-stopped": stop,
            "next-steps": NEXT_STEPS.format(app=self.app.name)
            if stop
            else "teardown the remaining pools; the daemon keeps running until the last one",
        }

    def _on_pause_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(NoParams, errors="fail")
        del params
        try:
            self.daemon.stop(self.unique_id)
        except ServiceError as exc:
            event.fail(str(exc))
            return
        self._save(dataclasses.replace(self.record, paused=True))
        event.log("rbd-mirror stopped; hooks leave it stopped until resume")
        event.set_results({"paused": "true", "next": "run resume to replay again"})

    def _on_resume_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(NoParams, errors="fail")
        del params
        try:
            self._relation_data()
        except NotReadyError as exc:
            event.fail(f"not ready: {exc.status.message}")
            return
        self._save(dataclasses.replace(self.record, paused=False))
        self._run_daemon()
        event.set_results({"paused": "false", "daemon-running": _result(self._daemon_running())})


def _pool_requests(
    names: list[str], source_pools: list[PoolInfo], replicas: int
) -> list[PoolRequest]:
    """Each pool as it is on the source (or with `replicas` from config)."""
    by_name = {p.name: p for p in source_pools}
    return [
        PoolRequest(name=n, pg_num=by_name[n].pg_num, replicas=replicas or by_name[n].size)
        for n in names
    ]


if __name__ == "__main__":  # pragma: nocover
    ops.main(RbdMirrorMigrationCharm)
