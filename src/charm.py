#!/usr/bin/env python3
"""rbd-mirror-migration: event wiring. The work is in daemon.py, ceph_cli.py and migration.py."""

from __future__ import annotations

import dataclasses
import json
import logging
import socket
from concurrent.futures import ThreadPoolExecutor

import ops

import migration
from ceph_cli import CephClient, CephError, PoolInfo, scrub
from daemon import DaemonFiles, ForeignFileError, RbdMirrorDaemon, ServiceError
from inputs import (
    CharmConfig,
    DemotePromoteParams,
    EnableMirroringParams,
    StatusParams,
    TeardownParams,
)
from migration import MigrationError, PeerSpec
from relations import (
    DestinationData,
    PoolRequest,
    RelationDataError,
    SourceData,
    broker_request,
    parse_destination,
    parse_source,
    source_key_request,
)

logger = logging.getLogger(__name__)

SOURCE = "source"
DESTINATION = "destination"
NEXT_STEPS = (
    "1. juju remove-relation {app}:destination ceph-mon:rbd-mirror (while it exists ceph-mon "
    "tells every client to create journaled images). "
    "2. juju remove-relation ceph-proxy:client for nova-compute, glance and cinder-ceph. "
    "3. juju relate ceph-mon:client with nova-compute:ceph, glance:ceph, cinder-ceph:ceph. "
    "4. Restore the cloud: activate images, attach volumes, start instances, start the APIs."
)


class NotReadyError(Exception):
    """Inputs are missing or wrong; `status` is what the unit should show."""

    def __init__(self, status: ops.StatusBase):
        self.status = status
        super().__init__(status.message)


@dataclasses.dataclass(frozen=True)
class Context:
    """Everything derived from config and relations that the actions and the status need."""

    config: CharmConfig
    source: CephClient
    destination: CephClient
    pools: list[str]
    peer: PeerSpec
    source_pools: tuple[PoolInfo, ...]


class RbdMirrorMigrationCharm(ops.CharmBase):
    """Migrates RBD pools from a ceph-proxy source to a ceph-mon destination with rbd-mirror."""

    def __init__(self, framework: ops.Framework):
        super().__init__(framework)
        self.daemon = RbdMirrorDaemon(self.charm_dir / "templates")
        self._report: migration.StatusReport | None = None
        self._ctx: Context | NotReadyError | None = None
        self._pair: tuple[CephClient, CephClient] | None = None
        self._running: bool | None = None  # the service manager's answer, once per dispatch
        on = self.on
        for event in (
            on.install,
            on.config_changed,
            on.upgrade_charm,
            on.update_status,
            on[SOURCE].relation_changed,
            on[SOURCE].relation_broken,
            on[DESTINATION].relation_joined,
            on[DESTINATION].relation_changed,
            on[DESTINATION].relation_broken,
        ):
            framework.observe(event, self._reconcile)
        framework.observe(on.collect_unit_status, self._on_collect_unit_status)
        framework.observe(on.enable_mirroring_action, self._on_enable_mirroring_action)
        framework.observe(on.status_action, self._on_status_action)
        framework.observe(on.demote_promote_action, self._on_demote_promote_action)
        framework.observe(on.teardown_action, self._on_teardown_action)

    # --- inputs ----------------------------------------------------------------------------
    @property
    def unique_id(self) -> str:
        """Our name towards ceph-mon: the host name, as the ceph-rbd-mirror charm uses."""
        return socket.gethostname()

    def _config(self) -> CharmConfig:
        try:
            return self.load_config(CharmConfig)
        except (ValueError, TypeError) as exc:
            raise NotReadyError(ops.BlockedStatus(f"Invalid config: {exc}")) from None

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
            source = parse_source((dict(src_rel.data[u]) for u in src_rel.units), self.unit.name)
            dest = parse_destination(
                (dict(dst_rel.data[u]) for u in dst_rel.units), self.unique_id, self.unit.name
            )
        except RelationDataError as exc:
            raise NotReadyError(ops.BlockedStatus(str(exc))) from None
        if source is None:
            raise NotReadyError(ops.WaitingStatus("waiting for ceph-proxy to send the source key"))
        if dest is None:
            raise NotReadyError(
                ops.WaitingStatus("waiting for ceph-mon to send the destination key")
            )
        return source, dest

    def _context(self) -> Context:
        """Config, relations and source pools; raise NotReadyError with the status to show.

        Built once per dispatch, so that its clients remember a cluster that did not answer.
        """
        if self._ctx is None:
            try:
                self._ctx = self._build_context()
            except NotReadyError as exc:
                self._ctx = exc
        if isinstance(self._ctx, NotReadyError):
            raise self._ctx
        return self._ctx

    def _clients(self, config: CharmConfig) -> tuple[CephClient, CephClient]:
        """The source and destination clients, one pair per dispatch."""
        if self._pair is None:
            timeout = float(config.command_timeout)
            self._pair = (
                CephClient(config.source_cluster_name, self.app.name, timeout=timeout),
                CephClient("ceph", f"rbd-mirror.{self.unique_id}", timeout=timeout),
            )
        return self._pair

    def _build_context(self) -> Context:
        config = self._config()
        source_data, dest_data = self._relation_data()
        if source_data.broker and source_data.broker.exit_code != 0:
            reason = scrub(source_data.broker.stderr)[:200]
            raise NotReadyError(
                ops.BlockedStatus(f"ceph-proxy could not set our key's caps: {reason}")
            )
        src, dst = self._clients(config)
        try:
            source_pools = src.pools()
        except CephError as exc:
            if not config.pools.strip():
                raise NotReadyError(ops.BlockedStatus(f"source unreachable: {exc}")) from None
            # Disaster path: with the pools named in config, the destination can still be
            # promoted by force while the source is gone.
            logger.warning("source unreachable, using config pools: %s", exc)
            source_pools = [
                PoolInfo(name=n, pg_num=0, size=0, applications=("rbd",))
                for n in migration.parse_pool_list(config.pools, "config pools")
            ]
        try:
            pools = migration.select_pools(config.pools, source_pools, None)
        except MigrationError as exc:
            raise NotReadyError(ops.BlockedStatus(str(exc))) from None
        missing = [p for p in pools if p not in dest_data.pools]
        if dest_data.broker and dest_data.broker.exit_code != 0:
            raise NotReadyError(
                ops.BlockedStatus(
                    f"ceph-mon could not create the pools: {scrub(dest_data.broker.stderr)[:200]}"
                )
            )
        if missing:
            raise NotReadyError(
                ops.WaitingStatus(f"waiting for destination pools: {', '.join(missing)}")
            )
        peer = PeerSpec(
            client_name=f"client.{self.app.name}", site_name=config.source_cluster_name
        )
        return Context(
            config=config,
            source=src,
            destination=dst,
            pools=pools,
            peer=peer,
            source_pools=tuple(source_pools),
        )

    # --- reconcile -------------------------------------------------------------------------
    def _reconcile(self, _: ops.EventBase) -> None:
        """Bring packages, relation data, files and the daemon in line with every input."""
        try:
            config = self._config()
        except NotReadyError:
            return
        self.daemon.install()
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
            changed = self.daemon.write(files)
        except ForeignFileError as exc:
            logger.error("%s", exc)
            return
        self._request_pools(config)
        self._run_daemon(changed)

    def _request_pools(self, config: CharmConfig) -> None:
        """Ask ceph-mon to create each pool to migrate, as it is on the source."""
        dst_rel = self.model.get_relation(DESTINATION)
        src, _ = self._clients(config)
        try:
            source_pools = src.pools()
            names = migration.select_pools(config.pools, source_pools, None)
        except (CephError, MigrationError) as exc:
            logger.warning("cannot request destination pools yet: %s", exc)
            return
        by_name = {p.name: p for p in source_pools}
        requests = [
            PoolRequest(
                name=n, pg_num=by_name[n].pg_num, replicas=config.pool_replicas or by_name[n].size
            )
            for n in names
        ]
        _, body = broker_request(requests)
        if dst_rel is not None and dst_rel.data[self.unit].get("broker_req") != body:
            dst_rel.data[self.unit]["broker_req"] = body
            logger.info("asked ceph-mon for pools %s", ", ".join(names))

    def _run_daemon(self, files_changed: bool) -> None:
        """Keep the daemon running (restart on new files) unless the migration is torn down."""
        try:
            report = self._status_report(self._context())
        except (NotReadyError, CephError, MigrationError) as exc:
            logger.info("daemon state unchanged: %s", exc)
            return
        if migration.torn_down(report):
            return
        try:
            running = self._daemon_running()
            if not running:
                logger.warning("rbd-mirror daemon is not running: starting it")
            if files_changed or not running:
                self.daemon.start(self.unique_id, restart=True)
                self._report, self._running = None, None
        except ServiceError as exc:
            logger.error("%s", exc)

    def _daemon_running(self) -> bool:
        """Whether the daemon runs: asked once per dispatch; start and stop forget the answer."""
        if self._running is None:
            self._running = self.daemon.running(self.unique_id)
        return self._running

    def _status_report(self, ctx: Context) -> migration.StatusReport:
        if self._report is None:
            self._report = migration.status(
                ctx.source,
                ctx.destination,
                ctx.pools,
                daemon_running=self._daemon_running(),
                workers=ctx.config.max_workers,
            )
        return self._report

    # --- status ----------------------------------------------------------------------------
    def _on_collect_unit_status(self, event: ops.CollectStatusEvent) -> None:
        try:
            self.daemon.check_foreign(self._config().source_cluster_name)
            ctx = self._context()
            report = self._status_report(ctx)
        except NotReadyError as exc:
            event.add_status(exc.status)
            return
        except ForeignFileError as exc:
            event.add_status(
                ops.BlockedStatus(
                    f"{exc.path} was not written by this charm "
                    "(co-located ceph-mon?): use another machine"
                )
            )
            return
        except CephError as exc:
            event.add_status(ops.BlockedStatus(f"cluster unreachable: {exc}"[:250]))
            return
        if report.split_brain:
            event.add_status(ops.BlockedStatus(migration.phase(report) + ": see status action"))
            return
        if report.source_error and not migration.torn_down(report):
            event.add_status(
                ops.BlockedStatus(
                    "source unreachable; if it is lost for good: demote-promote force=true"
                )
            )
            return
        running = self._daemon_running()
        if not running and not migration.torn_down(report):
            event.add_status(
                ops.BlockedStatus(
                    "rbd-mirror daemon not running; it is restarted on the next hook (journalctl "
                    f"-u ceph-rbd-mirror@rbd-mirror.{self.unique_id})"
                )
            )
            return
        event.add_status(ops.ActiveStatus(migration.phase(report)))

    # --- actions ---------------------------------------------------------------------------
    def _action_context(self, event: ops.ActionEvent, pools: str | None) -> Context | None:
        try:
            ctx = self._context()
            if pools is not None:
                subset = migration.select_pools(ctx.config.pools, ctx.source_pools, pools)
                ctx = dataclasses.replace(ctx, pools=subset)
        except NotReadyError as exc:
            event.fail(f"not ready: {exc.status.message}")
            return None
        except (MigrationError, CephError) as exc:
            event.fail(str(exc))
            return None
        return ctx

    def _on_enable_mirroring_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(EnableMirroringParams, errors="fail")
        ctx = self._action_context(event, params.pools)
        if ctx is None:
            return
        event.log(
            f"{'dry run: ' if params.dry_run else ''}enabling mirroring of {', '.join(ctx.pools)}"
        )
        with ThreadPoolExecutor(max_workers=1) as probe_exec:
            # The probe waits about a second for the mons to commit a blocklist entry: it runs
            # alongside the work. It adds a 1-second entry, so not in a dry run.
            probe = None if params.dry_run else probe_exec.submit(ctx.source.can_blocklist)
            try:
                results = migration.enable_mirroring(
                    ctx.source,
                    ctx.destination,
                    ctx.pools,
                    ctx.peer,
                    dry_run=params.dry_run,
                    workers=ctx.config.max_workers,
                    log=event.log,
                )
            except (MigrationError, CephError) as exc:
                event.fail(str(exc))
                return
            can_blocklist = None
            if probe is not None:
                try:
                    can_blocklist = probe.result()
                except CephError as exc:
                    event.fail(f"mirroring is enabled, but the source key check failed: {exc}")
                    return
        if can_blocklist is False:
            event.log(
                "WARNING: the source key cannot blocklist, so a restarted rbd-mirror cannot take "
                "over its own image locks; ceph-proxy has not applied this charm's key request "
                "(mon/osd 'profile rbd'). Mirroring runs, but fix this before relying on it."
            )
        event.set_results(
            {
                "dry-run": params.dry_run,
                "source-key-can-blocklist": str(can_blocklist).lower(),  # "none" in a dry run
                "pools": json.dumps(
                    {
                        r.pool: {
                            "images": r.images,
                            "changes": r.changes,
                            "peer-uuid": r.peer_uuid,
                        }
                        for r in results
                    }
                ),
                "changes": sum(len(r.changes) for r in results),
                "images": sum(r.images for r in results),
            }
        )

    def _on_status_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(StatusParams, errors="fail")
        ctx = self._action_context(event, params.pools)
        if ctx is None:
            return
        try:
            report = migration.status(
                ctx.source,
                ctx.destination,
                ctx.pools,
                daemon_running=self._daemon_running(),
                workers=ctx.config.max_workers,
            )
        except CephError as exc:
            event.fail(str(exc))
            return
        if ctx.pools == self._context().pools:
            self._report = report  # the unit status reuses it
        event.set_results(
            {
                "phase": migration.phase(report),
                "ready-for-cutover": str(report.ready).lower(),
                "source-reachable": str(not report.source_error).lower(),
                "split-brain": json.dumps(report.split_brain),
                "reasons": json.dumps(report.reasons[:50]),
                "images": report.total,
                "replaying": report.replaying,
                "pools": json.dumps({p.pool: p.as_dict(params.verbose) for p in report.pools}),
            }
        )

    def _on_demote_promote_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(DemotePromoteParams, errors="fail")
        ctx = self._action_context(event, params.pools)
        if ctx is None:
            return
        try:
            result = migration.demote_promote(
                ctx.source,
                ctx.destination,
                ctx.pools,
                timeout=params.timeout,
                force=params.force,
                daemon_running=self._daemon_running(),
                log=event.log,
            )
        except (MigrationError, CephError) as exc:
            event.fail(str(exc))
            return
        if result.report is not None and ctx.pools == self._context().pools:
            self._report = result.report  # the unit status reuses the verification's reads
        event.set_results(
            {
                "demoted": json.dumps(result.demoted),
                "promoted": json.dumps(result.promoted),
                "attempts": result.attempts,
                "seconds": f"{result.seconds:.1f}",
                "forced": str(result.forced).lower(),
                "next": "run teardown",
            }
        )

    def _on_teardown_action(self, event: ops.ActionEvent) -> None:
        params = event.load_params(TeardownParams, errors="fail")
        ctx = self._action_context(event, params.pools)
        if ctx is None:
            return
        stop = False
        try:
            result = migration.teardown(
                ctx.destination,
                ctx.pools,
                ctx.peer,
                dry_run=params.dry_run,
                workers=ctx.config.max_workers,
                log=event.log,
            )
            all_pools = migration.select_pools(ctx.config.pools, ctx.source_pools, None)
            stop = not params.dry_run and set(all_pools) <= set(ctx.pools)
            if stop:
                event.log("stopping the rbd-mirror daemon")
                self.daemon.stop(self.unique_id)
                self._running = None
        except (MigrationError, CephError, ServiceError) as exc:
            event.fail(str(exc))
            return
        event.set_results(
            {
                "dry-run": params.dry_run,
                "changes": json.dumps(result.changes),
                "order": ",".join(result.order),
                "peers-removed": json.dumps(result.peers_removed),
                "peers-removed-by-omap": json.dumps(result.peers_removed_by_omap),
                "journaling-removed": len(result.journaling_removed),
                "daemon-stopped": str(stop).lower(),
                "next-steps": NEXT_STEPS.format(app=self.app.name),
            }
        )


if __name__ == "__main__":  # pragma: nocover
    ops.main(RbdMirrorMigrationCharm)
