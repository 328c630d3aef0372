"""One dispatch's view of the migration: its inputs, its reads of the clusters, the daemon. No ops.

Juju runs the charm once per hook or action (a dispatch). `Session` is what that run knows:
- the inputs, checked (`config`, `relation_data`, `workspace`), or `NotReadyError` with the
  status the unit should show;
- the reads it shares: both cluster clients (so a cluster that did not answer is not waited for
  twice), the status report of every migrated pool and the service manager's answer, each read
  once, and read again after an action changed the clusters (`replace_report`) or the daemon was
  started or stopped (`forget_reads`);
- the unit's `Record` (record.py), through the store the charm gives it;
- the daemon's lifecycle rule (`keep_daemon`): running while a migration is in progress; stopped
  when paused, once every migrated pool is torn down, or when a relation or the unit goes.
The charm (charm.py) turns Juju's inputs into the two loaders and maps `NotReadyError` to a status.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, Protocol

import migration
from ceph_cli import CephClient, CephError, scrub
from daemon import DaemonFiles, ForeignFileError, RbdMirrorDaemon, ServiceError
from inputs import POOL_NAME, CharmConfig
from migration import MigrationError, Options, PeerSpec
from mirror_modes import snapshot_due, snapshot_max_age
from progress import History, Progress, measure, sizes_wanted
from record import Record
from relations import DestinationData, PoolRequest, SourceData, broker_request, pool_requests
from workflow import SNAPSHOT_WORKERS, Log

logger = logging.getLogger(__name__)

StatusKind = Literal["active", "blocked", "waiting", "maintenance"]


class NotReadyError(Exception):
    """Inputs are missing or wrong; `kind` and the message are the unit status to show."""

    def __init__(self, kind: StatusKind, message: str):
        self.kind: StatusKind = kind
        self.message = message
        super().__init__(message)


@dataclass(frozen=True)
class Workspace:
    """Everything derived from config and relations that the actions and the status need."""

    config: CharmConfig
    source: CephClient
    destination: CephClient
    pools: tuple[str, ...]  # the pools this run works on
    all_pools: tuple[str, ...]  # every pool being migrated
    peer: PeerSpec
    missing: tuple[str, ...] = ()  # pools ceph-mon has not created on the destination yet


class RecordStore(Protocol):
    """Where the unit's `Record` lives (the charm's StoredState)."""

    def load(self) -> Record:
        """The record as last saved."""
        ...

    def save(self, record: Record) -> None:
        """Keep `record` (it is committed when the dispatch ends well)."""
        ...

    def publish(self) -> None:
        """Share the record with the application's other units (the leader does)."""
        ...


RelationLoader = Callable[[], "tuple[SourceData, DestinationData]"]


class Session:
    """One dispatch: its inputs, the reads it shares, the record and the daemon's lifecycle."""

    def __init__(
        self,
        *,
        app: str,
        daemon: RbdMirrorDaemon,
        records: RecordStore,
        load_config: Callable[[], CharmConfig],
        load_relations: RelationLoader,
        progress_file: Path | None = None,
    ):
        self.app = app
        self.progress_file = progress_file
        self.daemon = daemon
        self.records = records
        self._load_config = load_config
        self._load_relations = load_relations
        self._pair: tuple[CephClient, CephClient] | None = None
        self._ws: Workspace | NotReadyError | None = None
        self._report: migration.StatusReport | None = None
        self._running: bool | None = None
        # "pool/image" -> bytes read by this dispatch (the preflight's): not read again
        self.known_sizes: dict[str, int] = {}
        self.leaving: str | None = None  # set when the unit goes: its last unit status
        self._protected: tuple[str, ...] | None = None  # pools the pre-start step covers
        self._unprotected: tuple[tuple[str, ...], ServiceError] | None = None  # failed so
        self._said: ServiceError | None = None  # the failure last logged

    # --- the record ------------------------------------------------------------------------
    @property
    def record(self) -> Record:
        """What this unit remembers of the migration."""
        return self.records.load()

    def save(self, record: Record) -> None:
        """Remember `record`; the daemon's pre-start step follows its pools at once."""
        self.records.save(record)
        self.keep_copies_protected(record.pools)

    def keep_copies_protected(self, pools: tuple[str, ...] | None = None) -> None:
        """`protect_copies` of the record's pools (or `pools`); a failure is logged only.

        Run first on every reconcile and on every record saved, whether or not the daemon is
        (re)started: systemd may restart it on its own at any time, and an upgrade from a
        revision without the drop-in finds the daemon running. A start without it fails.
        """
        try:
            self.protect_copies(self.record.pools if pools is None else pools)
        except ServiceError as exc:
            if exc is not self._said:  # once a dispatch: the cached failure is raised again
                logger.error("%s (retried next hook; the daemon is not started without it)", exc)
            self._said = exc

    def protect_copies(self, pools: tuple[str, ...]) -> None:
        """The daemon unit's pre-start step rewinds the copies of `pools` (daemon.py).

        ServiceError if the drop-in is not in force. A name that is not a pool name (junk in
        the peer bag) cannot be migrated, and is left out with an error logged.
        """
        if bad := [p for p in pools if not POOL_NAME.match(p)]:
            logger.error("not pool names, left out of the daemon's pre-start step: %s", bad)
            pools = tuple(p for p in pools if p not in bad)
        if pools == self._protected:
            return
        if self._unprotected is not None and self._unprotected[0] == pools:
            raise self._unprotected[1]  # tried in this dispatch already
        try:
            self.daemon.ensure_pre_start(pools)
        except ServiceError as exc:
            self._unprotected = (pools, exc)
            raise
        self._protected, self._unprotected = pools, None

    # --- inputs ----------------------------------------------------------------------------
    def config(self) -> CharmConfig:
        """The config, refused when it changes what a migration in progress was set up with."""
        config = self._load_config()
        was = self.record.source_cluster_name
        if was and was != config.source_cluster_name and not self.record.finished:
            raise NotReadyError(
                "blocked",
                f"source-cluster-name changed mid-migration: mirroring was set up from "
                f"'{was}' (its peers and the daemon's files use that name): set it back",
            )
        return config

    def relation_data(self) -> tuple[SourceData, DestinationData]:
        """Both relations' data; NotReadyError until both keys and addresses are there."""
        return self._load_relations()

    def broker_problem(self) -> str:
        """A broker that refused our request ("" if none): shown, never a reason to stop.

        A failed reply (say ceph-mon could not create a new pool) must not stop the daemon or
        the actions on the pools that exist: the workspace waits for missing pools itself.
        """
        try:
            source, dest = self.relation_data()
        except NotReadyError:
            return ""
        pools_missing = True
        try:
            pools_missing = bool(self._built().missing)
        except NotReadyError:
            pass
        for side, broker in (("ceph-proxy", source.broker), ("ceph-mon", dest.broker)):
            if side == "ceph-mon" and not pools_missing:
                continue  # every pool to migrate exists: that failure no longer matters
            if broker and broker.exit_code != 0:
                what = "set our key's caps" if side == "ceph-proxy" else "create the pools"
                return f"{side} could not {what}: {scrub(broker.stderr)[:200]}"
        return ""

    def clients(self, config: CharmConfig) -> tuple[CephClient, CephClient]:
        """The source and destination clients, one pair per dispatch."""
        if self._pair is None:
            timeout = float(config.command_timeout)
            self._pair = (
                CephClient(config.source_cluster_name, self.app, timeout=timeout),
                CephClient("ceph", f"rbd-mirror.{self.daemon.unique_id}", timeout=timeout),
            )
        return self._pair

    def workspace(self, subset: str | None = None) -> Workspace:
        """Config, relations and pools (narrowed to `subset`); NotReadyError if not there yet.

        A destination pool ceph-mon has not created yet blocks only the runs that name it (all
        of them without `subset`): the other pools' actions go on.
        """
        ws = self._built()
        pools = ws.all_pools if subset is None else migration.narrowed(list(ws.all_pools), subset)
        missing = [p for p in pools if p in ws.missing]
        if missing:
            raise NotReadyError("waiting", f"waiting for destination pools: {', '.join(missing)}")
        return dataclasses.replace(ws, pools=tuple(pools))

    def _built(self) -> Workspace:
        """The workspace, built once per dispatch (its clients remember a silent cluster)."""
        if self._ws is None:
            try:
                self._ws = self._build_workspace()
            except NotReadyError as exc:
                self._ws = exc
        if isinstance(self._ws, NotReadyError):
            raise self._ws
        return self._ws

    def _build_workspace(self) -> Workspace:
        config = self.config()
        _, dest_data = self.relation_data()
        src, dst = self.clients(config)
        try:
            pools = self._pools(config, src, dst, dest_data)
        except MigrationError as exc:
            raise NotReadyError("blocked", str(exc)) from None
        record = self.record
        dropped = sorted(set(record.pools) - set(pools) - set(record.torn_down))
        if dropped and not record.finished:
            raise NotReadyError(
                "blocked",
                f"config pools leaves out {', '.join(dropped)}: enable-mirroring set "
                "them up and they are not torn down; add them back",
            )
        missing = tuple(p for p in pools if p not in dest_data.pools)
        peer = PeerSpec(client_name=f"client.{self.app}", site_name=config.source_cluster_name)
        return Workspace(config, src, dst, tuple(pools), tuple(pools), peer, missing)

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

    def options(self, *, dry_run: bool, log: Log) -> Options:
        """How this dispatch's workflow steps run (config's workers, the record's teardowns)."""
        return Options(
            workers=self._built().config.max_workers,
            dry_run=dry_run,
            log=log,
            torn_down=frozenset(self.record.torn_down),
        )

    def daemon_files(self, config: CharmConfig) -> DaemonFiles:
        """What the daemon's files are rendered from; raise NotReadyError without both keys."""
        source, dest = self.relation_data()
        return DaemonFiles(
            destination_mon_hosts=dest.mon_hosts,
            destination_key=dest.key,
            source_cluster=config.source_cluster_name,
            source_mon_hosts=source.mon_hosts,
            source_key=source.key,
            tuning=config.daemon_tuning,
        )

    def pool_requests(self, config: CharmConfig) -> tuple[list[str], str] | None:
        """The pools to ask ceph-mon for and the broker request body; None if unknown yet."""
        src, _ = self.clients(config)
        try:
            source_pools = src.pools()
            names = migration.select_pools(config.pool_list, source_pools, None)
        except (CephError, MigrationError) as exc:
            logger.warning("cannot request destination pools yet: %s", exc)
            return None
        requests: list[PoolRequest] = pool_requests(names, source_pools, config.pool_replicas)
        return names, broker_request(requests)[1]

    # --- shared reads ----------------------------------------------------------------------
    def report(self) -> migration.StatusReport:
        """Both sides of every migrated pool that exists on the destination.

        Read once per dispatch, and again after an action changed them (`replace_report`).
        """
        if self._report is None:
            ws = self._built()
            self._report = migration.status(
                ws.source,
                ws.destination,
                [p for p in ws.all_pools if p not in ws.missing],
                daemon_running=self.daemon_running(),
                workers=ws.config.max_workers,
                callouts=True,
                recorded_torn_down=self.record.torn_down,
                journals=True,
                snapshot_max_age=self.snapshot_max_age(ws.config),
            )
        return self._report

    def replace_report(
        self, report: migration.StatusReport | None, pools: tuple[str, ...]
    ) -> None:
        """After an action: the unit status reuses `report` if it covers every migrated pool.

        Otherwise (a subset, or an action that changed the clusters after its last read) the
        unit status reads them again.
        """
        ws = self._built()
        if report is not None and pools == ws.all_pools and not ws.missing:
            self._report = report
        else:
            self._report = None

    def progress(self, report: migration.StatusReport) -> Progress | None:
        """The initial sync's bytes and ETA for `report` (None when the source was not read).

        Each source image's size is read once and kept, with the samples the rate is measured
        from, in the unit's `progress_file` (progress.py).
        """
        if not report.source_answers:
            return None
        history = History()
        try:
            if self.progress_file is not None and self.progress_file.exists():
                history = History.from_json(self.progress_file.read_text())
        except (OSError, UnicodeDecodeError) as exc:
            logger.info("progress history unreadable, starting a new one: %s", exc)
        ws = self._built()
        history.sizes.update(self.known_sizes)
        for pool, names in sizes_wanted(report, history.sizes).items():
            try:
                found = ws.source.image_sizes(pool, names, workers=ws.config.max_workers)
            except CephError as exc:
                logger.info("image sizes of %s not read: %s", pool, exc)
                continue
            history.sizes.update({f"{pool}/{name}": size for name, size in found.items()})
        slots = ws.config.rbd_mirror_concurrent_image_syncs  # images the daemon copies at once
        progress, history = measure(report, history, time.time(), slots=slots)
        if self.progress_file is not None:
            try:
                self.progress_file.parent.mkdir(parents=True, exist_ok=True)
                self.progress_file.write_text(history.to_json())
            except OSError as exc:  # the progress is still shown; only the rate waits
                logger.warning("progress history not kept: %s", exc)
        return progress

    def daemon_running(self) -> bool:
        """Whether the daemon runs: asked once per dispatch; start and stop forget the answer."""
        if self._running is None:
            self._running = self.daemon.running()
        return self._running

    def forget_reads(self) -> None:
        """After a start or stop, the daemon's state and the report are read again."""
        self._report, self._running = None, None

    # --- the daemon's lifecycle --------------------------------------------------------------
    def write_daemon_files(self, config: CharmConfig) -> bool:
        """Render the files; False (and nothing written) while the inputs are not there."""
        try:
            files = self.daemon_files(config)
            self.daemon.write(files)  # marks a restart pending on disk first if anything changes
        except NotReadyError as exc:
            logger.info("not configuring the daemon yet: %s", exc)
            return False
        except ForeignFileError as exc:
            logger.error("%s", exc)
            return False
        return True

    def keep_daemon(self) -> None:
        """Keep the daemon running, restarted after new files, unless paused or finished.

        Finished is read from the clusters whenever they answer; the record's `finished` only
        decides while they cannot be read (the relations removed after the migration). So a
        unit whose record says finished runs its daemon again once the leader starts a new
        migration (`enable-mirroring restart=true`).
        """
        record = self.record
        self.keep_copies_protected(record.pools)
        # An unfinished abort of every migrated pool keeps the daemon stopped: it would copy
        # images back while the next abort deletes them. Of a subset, the rest still migrates.
        aborting_all = bool(record.aborting) and set(record.pools) <= set(record.aborting)
        if record.paused or record.aborted or aborting_all:
            why = "paused" if record.paused else "the migration was aborted"
            self._stop_if_running(why if not aborting_all else "an abort is unfinished")
            self._seen(down=record.paused)
            return
        try:
            report = self.report()
        except (NotReadyError, CephError, MigrationError, ServiceError) as exc:
            if record.finished:
                self._stop_if_running(f"migration finished (the clusters are not read: {exc})")
                return
            logger.info("migration state unknown (%s): keeping the daemon running", exc)
        else:
            ws = self._built()
            if migration.finished(report) and not ws.missing:
                if not record.finished:
                    self.save(record.tore_down(list(ws.all_pools), finished=True))
                self._stop_if_running("every migrated pool is torn down")
                return
        try:
            self._start_daemon_if_needed()
            self._seen(down=not self.daemon_running() or self._silent())
        except ServiceError as exc:
            logger.error("%s (a restart stays pending, retried next hook)", exc)
            self._seen(down=True)

    def _start_daemon_if_needed(self) -> None:
        """Start a stopped daemon, restart one with new files.

        systemd runs the unit's pre-start step first (daemon.py): interrupted snapshot copies
        are rewound with the old daemon gone, before the new one resumes them. Never started
        without it (ServiceError).
        """
        self.protect_copies(self.record.pools)
        running = self.daemon_running()
        if not running:
            logger.warning("rbd-mirror daemon is not running: starting it")
        if self.daemon.restart_pending() or not running:
            self.daemon.start(restart=True)
            self.daemon.restarted()
            self.forget_reads()

    def snapshot_max_age(self, config: CharmConfig) -> int:
        """How old the last copied mirror snapshot may be for `ready-for-cutover`."""
        return snapshot_max_age(
            config.snapshot_interval_s, self_scheduled=bool(self.record.self_scheduled)
        )

    def snapshot_if_due(self) -> None:
        """Snapshot mode, pools the source's mgr does not schedule: the charm's own schedule.

        A mirror snapshot of every primary snapshot-mirrored image of those pools, once per
        `snapshot-interval` at most (on update-status, so no more often than that hook runs);
        demoted or unmirrored images are skipped by the bulk op itself. Failures are logged:
        the next hook tries again, and status shows the age of the last copied snapshot.
        """
        record = self.record
        if not record.self_scheduled or record.paused or record.finished:
            return
        try:
            ws = self._built()
        except NotReadyError:
            return
        now = time.time()
        if not snapshot_due(ws.config.snapshot_interval_s, now - record.snapshotted_at):
            return
        for pool in record.self_scheduled:
            if pool in record.torn_down or pool not in ws.all_pools:
                continue
            try:
                images = ws.source.pool_state(pool).images
                taken, failed = ws.source.mirror_snapshot_all(
                    pool, images, workers=max(ws.config.max_workers, SNAPSHOT_WORKERS)
                )
            except CephError as exc:
                logger.warning("%s: the charm's mirror snapshots failed: %s", pool, exc)
                continue
            logger.info(
                "%s: mirror snapshot of %d image(s) (the charm's schedule)", pool, len(taken)
            )
            if failed:
                logger.warning("%s: no mirror snapshot of %s", pool, ", ".join(sorted(failed)))
        self.save(self.record.snapshots_taken(now))

    def _silent(self) -> bool:
        """The report says the running daemon publishes no image state (False if unread)."""
        try:
            return self.report().silent_daemon
        except (NotReadyError, CephError, MigrationError, ServiceError):
            return False

    def _seen(self, *, down: bool) -> None:
        """Remember since when the daemon is down (the journal guard's daemon-down-limit)."""
        record = self.record
        seen = record.daemon_seen(down=down, now=time.time())
        if seen != record:
            self.save(seen)

    def stop_daemon(self, why: str) -> None:
        """Stop and disable the daemon; ServiceError if the service manager fails."""
        logger.info("stopping and disabling the rbd-mirror daemon: %s", why)
        try:
            self.daemon.stop()
        finally:
            self.forget_reads()

    def _stop_if_running(self, why: str) -> None:
        """Stop it if it runs, or is about to: systemd restarts a failed start on its own."""
        try:
            if self.daemon_running() or not self.daemon.stopped():
                self.stop_daemon(why)
        except ServiceError as exc:
            logger.error("%s", exc)

    def leave(
        self,
        why: str,
        sides: tuple[str, ...],
        *,
        unit_goes: bool = False,
        others: int | None = 0,
    ) -> None:
        """A relation or the unit goes: the daemon stopped and disabled, `sides`' files removed.

        Whether it runs or not: an enabled unit would start again at the next boot. A migration
        left unfinished keeps the source's images journaled, and their journals grow while no
        daemon replays them: the log says what to do, and so does the last unit status of a
        unit that goes (`leaving`), which also counts the `others` units that stay (None:
        unknown).
        """
        record = self.record
        unfinished = bool(record.pools) and not record.finished
        if unfinished and not others:
            logger.warning(
                "%s before the migration of %s finished: the source's images stay mirrored "
                "(journal mode: their journals grow; snapshot mode: their mirror snapshots "
                "pile up) until mirroring is turned off there (README, "
                "'Leaving a migration unfinished') or a unit replays them again",
                why,
                ", ".join(record.pools),
            )
        stopped = True
        try:
            self.stop_daemon(why)
        except ServiceError as exc:
            logger.error("%s", exc)
            stopped = False
        removed = self.daemon.remove_files(sides)
        if removed:
            logger.info("removed %s", ", ".join(removed))
        if unit_goes:
            self.leaving = _leaving_message(
                self.daemon.service, stopped, list(record.pools) if unfinished else [], others
            )


def _leaving_message(
    service: str, stopped: bool, unfinished: list[str], others: int | None
) -> str:
    """The last unit status of a unit that goes: what it leaves behind."""
    if not stopped:
        return (
            f"leaving, but {service} did not stop (journalctl -u {service}); this unit's "
            "files removed"
        )
    if unfinished and others:
        return (
            f"leaving: this unit's daemon stopped; {others} other unit(s) keep replaying the "
            f"migration of {', '.join(unfinished)}"
        )
    if unfinished:
        nobody = "no other unit replaying it" if others == 0 else "unless another unit replays it"
        return (
            f"leaving with the migration of {', '.join(unfinished)} unfinished, {nobody}: the "
            "source stays mirrored (README: Leaving a migration unfinished)"
        )
    return "leaving: rbd-mirror stopped and disabled, this unit's files removed"
