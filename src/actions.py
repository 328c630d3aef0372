"""What each action does, from its typed params to its results. No ops here.

Each function takes the dispatch's `Session`, the action's params (inputs.py) and the action's
`log` (progress lines), calls the workflow (migration.py), records what the clusters cannot tell
(record.py) and returns the results: lowercase dashed keys; lists and per-pool detail as JSON
strings. Expected failures raise `MigrationError`, `CephError`, `ServiceError` or `NotReadyError`;
the charm turns them into `event.fail` (charm.py, `_run_action`).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import ceph_release
import migration
import mirror_modes
from ceph_cli import CephCluster, CephError, unit_tool_versions
from daemon import ServiceError
from inputs import (
    AbortParams,
    DemotePromoteParams,
    EnableMirroringParams,
    NoParams,
    RollbackParams,
    StatusParams,
    TeardownParams,
    VerifyParams,
)
from migration import MigrationError, Options
from progress import Progress
from relations import SOURCE_KEY_CAPS, source_key_op
from session import Session, Workspace
from workflow import Log

Results = dict[str, Any]
MAX_LISTED_RESULTS = 50  # items of a list result; the rest is counted
MAX_IMAGE_DETAIL = 100  # images in `status verbose=true` results; all of them go to a file
SOURCE_KEY_CAPS_TEXT = " ".join(  # what ceph-proxy must grant the source key
    f"{k} '{c}'" for k, c in zip(SOURCE_KEY_CAPS[::2], SOURCE_KEY_CAPS[1::2], strict=True)
)
NEXT_STEPS = (
    "1. juju remove-relation {app}:destination ceph-mon:rbd-mirror (while it exists ceph-mon "
    "tells every client to create journaled images). "
    "2. juju remove-relation ceph-proxy:client for nova-compute, glance and cinder-ceph. "
    "3. juju relate ceph-mon:client with nova-compute:ceph, glance:ceph, cinder-ceph:ceph. "
    "4. Glance: its image locations still name the old cluster ({old_fsid}); until they name "
    "{new_fsid}, nova and cinder make full copies instead of clones. Rewrite them in glance's "
    "database (glance-locations-sql), never with `glance location-delete`: it deletes the "
    "image's data on the cluster glance now uses. "
    "5. Nova: each attached volume keeps the old monitors: with its instance stopped, "
    "`nova-manage volume_attachment refresh <instance> <volume> <connector.json>` (Xena and "
    "later; the connector from `nova-manage volume_attachment get_connector --json` on its "
    "compute host), or shelve and unshelve it. "
    "6. Restore the cloud: activate images, attach volumes, start instances, start the APIs. "
    "7. juju remove-application {app} (its keyrings and confs go with it). "
    "8. Revoke this charm's key on the old cluster (ceph-proxy's broker cannot delete keys): "
    "`ceph auth del client.{app}` with the source's admin key. The source's images stay "
    "demoted (read-only) with the mirroring the migration gave them (journal mode: journaling "
    "and pool-mode mirroring; snapshot mode: image-mode mirroring and their last mirror "
    "snapshots): see the README (runbook step 13) before reusing them."
)


def prepare(
    session: Session, pools: str | None, log: Log, *, dry_run: bool = False, changes: bool = True
) -> tuple[Workspace, Options]:
    """The workspace narrowed to `pools` and the run's options.

    An action that `changes` pools refuses while any image of any migrated pool is primary on
    both clusters, also outside the subset it was asked to work on.
    """
    ws = session.workspace(pools)
    opts = session.options(dry_run=dry_run, log=log)
    if changes and ws.pools != ws.all_pools and not opts.dry_run:
        report = session.report()
        if report.split_brain:
            raise MigrationError(
                migration.split_brain_advice(report.split_brain, ws.peer.site_name)
            )
    return ws, opts


def enable_mirroring(session: Session, params: EnableMirroringParams, log: Log) -> Results:
    """Set up mirroring of the pools; the source key's blocklist cap probed alongside."""
    ws, opts = prepare(session, params.pools, log, dry_run=params.dry_run)
    record = session.record
    if record.finished and not params.restart:
        raise MigrationError(
            "the migration is finished (torn down), nothing changed: enabling mirroring "
            "again would re-arm mirroring on the source's images and the daemon. To start a "
            "new migration on purpose, re-run with restart=true"
        )
    pair = read_releases(ws.source, ws.destination)
    log(releases_line(pair, refuse=True))
    mode = mirror_modes.mode(params.mode or ws.config.mirror_mode)
    if not mode.journals and (refusal := ceph_release.snapshot_mode_refusal(pair)):
        raise MigrationError(f"{refusal}; nothing changed")
    clone_refusal = "" if mode.carries_clones else ceph_release.snapshot_clone_refusal(pair)
    log(
        f"{'dry run: ' if opts.dry_run else ''}enabling {mode.name} mirroring of "
        f"{', '.join(ws.pools)}"
    )
    checked = migration.preflight(
        ws.source,
        ws.destination,
        ws.pools,
        opts,
        all_pools=ws.all_pools,
        key_caps=(
            f"{SOURCE_KEY_CAPS_TEXT}: the broker request "
            f"{json.dumps(source_key_op(session.app))}; by hand, with the source's admin key: "
            f"ceph auth caps client.{session.app} {SOURCE_KEY_CAPS_TEXT}"
        ),
        release=pair.source.oldest_mon,
        aborting=record.aborting,
        mode=mode,
        clone_refusal=clone_refusal,
        restart=params.restart,
    )
    # the pool-level refusals first: they say what the per-image findings cannot
    migration.refuse_to_enable(checked.report, ws.peer, restart=params.restart, mode=mode)
    findings = checked.findings
    session.known_sizes.update(checked.sizes)  # the progress reads them no more
    for finding in findings:
        log(f"{'BLOCKED' if finding.blocks else 'WARNING'}: {finding}")
    warnings = json.dumps([str(f) for f in findings])
    blocking = [str(f) for f in findings if f.blocks]
    if blocking and not opts.dry_run:
        raise MigrationError(
            f"enable-mirroring refused by its preflight, nothing changed: {'; '.join(blocking)}",
            results={"warnings": warnings},
        )
    if params.restart:
        record = record.restarted_migration()

    def before_changes(journaled: dict[str, list[str]]) -> None:
        enabled = record.enabled(list(ws.pools), ws.config.source_cluster_name, journaled)
        try:  # the daemon's pre-start step covers a pool before any copy of it can begin
            session.protect_copies(enabled.pools)
        except ServiceError as exc:
            raise ServiceError(
                f"{exc}; nothing changed. The daemon's pre-start step must cover a pool before "
                "it is mirrored: see the unit's log and `systemctl daemon-reload`, then re-run"
            ) from None
        session.save(enabled)

    results = migration.enable_mirroring(
        ws.source,
        ws.destination,
        ws.pools,
        ws.peer,
        opts,
        restart=params.restart,
        before_changes=before_changes,
        journal_object_sets=ws.config.journal_max_object_sets,
        report=checked.report,
        mode=mode,
        snapshot_interval=ws.config.snapshot_interval,
        scheduled=lambda done: session.save(session.record.scheduled_by_charm(*_schedulers(done))),
    )
    locked = {r.pool: r.locked for r in results if r.locked}
    not_ours = {r.pool: r.had_journaling for r in results if r.had_journaling}
    if (locked or not_ours) and not opts.dry_run:
        session.save(session.record.locked_too(locked, not_ours))
    session.replace_report(None, ws.pools)
    if not opts.dry_run:
        session.keep_daemon()  # started now if an abort had stopped it
    return {
        "dry-run": opts.dry_run,
        "source-key-can-blocklist": not any(f.kind == "blocklist" for f in findings),
        "warnings": warnings,
        "mode": mode.name,
        "pools": json.dumps(
            {
                r.pool: {
                    "images": r.images,
                    "changes": r.changes,
                    "peer-uuid": r.peer_uuid,
                    **(
                        {}
                        if mode.journals
                        else {"schedule": r.schedule, "first-snapshots": r.first_snapshots}
                    ),
                }
                for r in results
            }
        ),
        "changes": sum(len(r.changes) for r in results),
        "images": sum(r.images for r in results),
    }


def _schedulers(results) -> tuple[list[str], list[str]]:
    """Snapshot mode: (pools whose snapshots the charm takes, pools the source's mgr does)."""
    ours = [r.pool for r in results if r.schedule == migration.SELF_SCHEDULED]
    mgr = [r.pool for r in results if r.schedule and r.schedule != migration.SELF_SCHEDULED]
    return ours, mgr


def read_releases(source: CephCluster, destination: CephCluster) -> ceph_release.ReleasePair:
    """Both clusters' versions (the source's mgr is never asked) and this unit's tools'."""
    return ceph_release.ReleasePair(
        source.versions(daemons=False), destination.versions(daemons=True), unit_tool_versions()
    )


def releases_line(pair: ceph_release.ReleasePair, *, refuse: bool = False) -> str:
    """`releases: source 16.2.15 (pacific), ...: proven in the lab`.

    With `refuse`, a pair outside ceph_release.RELEASE_RULES raises MigrationError instead.
    """
    support = ceph_release.support(pair)
    if refuse and support.startswith("refused"):
        raise MigrationError(f"{support}; nothing changed")
    return (
        f"releases: source {pair.source.describe()}, destination {pair.destination.describe()}, "
        f"this unit's {pair.describe_unit_tools()}, daemons registered "
        f"{pair.destination.describe_daemons()}: {support}"
    )


def _release_results(source: CephCluster, destination: CephCluster) -> Results:
    """Each cluster's release, this unit's tools', the registered daemons' and the support.

    The same keys always: a side that does not answer is `unknown: <why>`.
    """
    sides: dict[str, ceph_release.ClusterVersions | str] = {}
    for name, cluster, daemons in (("source", source, False), ("destination", destination, True)):
        try:
            sides[name] = cluster.versions(daemons=daemons)
        except CephError as exc:
            sides[name] = f"unknown: {exc}"
    src, dst = sides["source"], sides["destination"]
    results: Results = {
        "source-release": src if isinstance(src, str) else src.describe(),
        "destination-release": dst if isinstance(dst, str) else dst.describe(),
        "daemon-release": dst if isinstance(dst, str) else dst.describe_daemons(),
        "release-support": "unknown: a cluster did not answer",
    }
    tools = unit_tool_versions()
    results["unit-tools-release"] = ceph_release.describe_tools(tools)
    if not isinstance(src, str) and not isinstance(dst, str):
        results["release-support"] = ceph_release.support(
            ceph_release.ReleasePair(src, dst, tools)
        )
    return results


def status(session: Session, params: StatusParams, log: Log, reports_dir: Path) -> Results:
    """Both sides of the pools; with `verbose`, per-image detail (all of it in a file)."""
    ws, opts = prepare(session, params.pools, log, changes=False)
    report = migration.status(
        ws.source,
        ws.destination,
        ws.pools,
        daemon_running=session.daemon_running(),
        workers=opts.workers,
        callouts=True,
        recorded_torn_down=opts.torn_down,
        journals=True,
        snapshot_max_age=session.snapshot_max_age(ws.config),
    )
    session.replace_report(report, ws.pools)
    # snapshot-mirrored clones block the cutover: read (one per snapshot pool) only when ready
    reasons = report.reasons or migration.snapshot_clones(ws.source, report)
    measured: list[Progress | None] = []

    def syncing() -> str:  # the sync's bytes and ETA, read only while images are copied
        measured.append(session.progress(report))
        return measured[0].line if measured[0] else ""

    results: Results = {
        "phase": migration.phase(report, syncing),
        "ready-for-cutover": not reasons,
        "source-reachable": report.source_answers,
        "split-brain": json.dumps(report.split_brain[:MAX_LISTED_RESULTS]),
        "split-brain-count": len(report.split_brain),
        "reasons": json.dumps(reasons[:MAX_LISTED_RESULTS]),
        "reasons-count": len(reasons),
        "images": report.total,
        "replaying": report.replaying,
        "daemon-errors": json.dumps(report.daemon_errors[:MAX_LISTED_RESULTS]),
        "journal-backlog-limit": ws.config.journal_limit_bytes,
        "journal-guard": json.dumps(
            migration.journal_backlog(report, ws.config.journal_limit_bytes)
        ),
        **_release_results(ws.source, ws.destination),
    }
    if measured and measured[0]:
        results.update(measured[0].as_results())
    pools = {p.pool: p.as_dict() for p in report.pools}
    if report.split_brain:
        results["split-brain-advice"] = migration.split_brain_advice(
            report.split_brain, ws.peer.site_name
        )
    if params.verbose:
        results.update(_image_detail(report, pools, reports_dir / "status-verbose.json"))
    results["pools"] = json.dumps(pools)
    return results


def _image_detail(report: migration.StatusReport, pools: dict, path: Path) -> Results:
    """Per-image detail: MAX_IMAGE_DETAIL images in the results, all of them in `path`.

    A hook tool takes at most 128 KiB in one argument: 1000 images would not fit.
    """
    images = sorted(
        (i for p in report.pools for i in p.images),
        key=lambda i: (i.caught_up, i.pool, i.name),
    )
    for image in images[:MAX_IMAGE_DETAIL]:
        pools[image.pool].setdefault("image-status", []).append(image.as_dict())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps([i.as_dict() for i in images], indent=1))
    return {
        "image-status-shown": min(len(images), MAX_IMAGE_DETAIL),
        "image-status-total": len(images),
        "image-status-file": str(path),
    }


def demote_promote(session: Session, params: DemotePromoteParams, log: Log) -> Results:
    """The cutover: preflight, demote the source, promote the destination, verify."""
    ws, opts = prepare(session, params.pools, log)
    result = migration.demote_promote(
        ws.source,
        ws.destination,
        ws.pools,
        opts,
        timeout=params.timeout,
        force=params.force,
        daemon_running=session.daemon_running(),
        ignore_watchers=params.ignore_watchers,
        source_cluster=ws.peer.site_name,
    )
    session.replace_report(result.report, ws.pools)  # the verification read, after the changes
    session.save(session.record.cut_over(list(ws.pools)))
    results: Results = {
        "demoted": json.dumps(result.demoted),
        "promoted": json.dumps(result.promoted),
        "cutover-snapshots": json.dumps(result.snapshots),
        "attempts": result.attempts,
        "seconds": f"{result.seconds:.1f}",
        "forced": result.forced,
        "next": "teardown force=true (the source is lost)" if result.forced else "teardown",
    }
    if result.forced:
        results["at-risk"] = json.dumps(result.at_risk[:MAX_LISTED_RESULTS])
        results["at-risk-count"] = len(result.at_risk)
        results["at-risk-note"] = (
            "images not caught up when promoted; images the destination never received cannot "
            "be listed without the source: compare with its image list if it comes back"
        )
    return results


def teardown(session: Session, params: TeardownParams, log: Log, reports_dir: Path) -> Results:
    """Mirroring off on the pools; the daemon stopped once every migrated pool is torn down."""
    ws, opts = prepare(session, params.pools, log, dry_run=params.dry_run)
    result = migration.teardown(
        ws.source,
        ws.destination,
        ws.pools,
        ws.peer,
        opts,
        force=params.force,
        all_pools=[p for p in ws.all_pools if p not in ws.missing],
    )
    stop = finished = False
    session.replace_report(None, ws.pools)
    if not opts.dry_run:
        record = session.record.tore_down(list(ws.pools), finished=False)
        report = migration.status(
            ws.source,
            ws.destination,
            ws.all_pools,
            daemon_running=True,
            workers=opts.workers,
            recorded_torn_down=record.torn_down,
        )
        finished = migration.finished(report)
        session.save(record.tore_down([], finished=finished))
        if finished:
            log("every migrated pool is torn down: stopping the rbd-mirror daemon")
            try:
                session.stop_daemon("every migrated pool is torn down")
                stop = True
            except ServiceError as exc:  # the teardown itself is done: say so
                log(f"WARNING: {exc}; the next hook stops it")
    cloud = None
    if finished:  # the teardown is done: a failed read here must not hide the next steps
        try:
            cloud = migration.cloud_facts(ws.source, ws.destination, ws.all_pools)
        except CephError as exc:
            log(f"WARNING: the fsids and glance's locations were not read: {exc}")
            cloud = migration.CloudFacts("unknown", "unknown", ())
    return {
        **(_cloud_results(cloud, reports_dir / "glance-locations.json") if cloud else {}),
        "dry-run": opts.dry_run,
        "changes": json.dumps(result.changes),
        "order": ",".join(result.order),
        "peers-removed": json.dumps(result.peers_removed),
        "peers-removed-by-omap": json.dumps(result.peers_removed_by_omap),
        "journaling-removed": len(result.journaling_removed),
        "daemon-stopped": stop,
        "next-steps": _teardown_next(session.app, cloud, stopped=stop, dry_run=opts.dry_run),
        **({"schedules-left": json.dumps(result.schedules_left)} if result.schedules_left else {}),
    }


def _cloud_results(cloud: migration.CloudFacts, path: Path) -> Results:
    """The fsids and glance's new locations (all of them in `path`) for the next steps."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(list(cloud.glance_locations), indent=1))
    return {
        "old-fsid": cloud.old_fsid,
        "new-fsid": cloud.new_fsid,
        "glance-locations-sql": cloud.sql,
        "glance-locations": json.dumps(list(cloud.glance_locations[:MAX_LISTED_RESULTS])),
        "glance-locations-count": len(cloud.glance_locations),
        "glance-locations-file": str(path),
    }


def _teardown_next(
    app: str, cloud: migration.CloudFacts | None, *, stopped: bool, dry_run: bool
) -> str:
    if dry_run:
        return "dry run, nothing changed: run teardown without dry-run to make these changes"
    if cloud is None:
        return "teardown the remaining pools; the daemon keeps running until the last one"
    hint = "" if stopped else "The daemon could not be stopped now; the next hook stops it. "
    return hint + NEXT_STEPS.format(app=app, old_fsid=cloud.old_fsid, new_fsid=cloud.new_fsid)


def abort(session: Session, params: AbortParams, log: Log) -> Results:
    """Call the migration off before the cutover: the source as it was, the destination empty."""
    ws, opts = prepare(session, params.pools, log, dry_run=params.dry_run)
    record = session.record

    def before_changes() -> None:
        session.save(session.record.abort_started(list(ws.pools)))
        log("stopping the rbd-mirror daemon for the abort")
        session.stop_daemon("abort")

    result = migration.abort(
        ws.source,
        ws.destination,
        ws.pools,
        ws.peer,
        opts,
        journaled=record.journaled,
        aborting=record.aborting,
        all_pools=ws.all_pools,
        before_changes=before_changes,
    )
    session.replace_report(None, ws.pools)
    locked = [f"{p}/{n}" for p in ws.pools for n in record.locked.get(p, ())]
    if not opts.dry_run:
        session.save(session.record.aborted_pools(list(ws.pools)))
        session.keep_daemon()  # stays stopped unless other pools still migrate
    results: Results = {
        "dry-run": opts.dry_run,
        "pools": ",".join(ws.pools),
        "changes": json.dumps(result.changes[:MAX_LISTED_RESULTS]),
        "changes-count": len(result.changes),
        "deleted": json.dumps({p: len(n) for p, n in result.deleted.items()}),
        "journaling-removed": len(result.journaling_removed),
        "daemon-running": session.daemon_running(),
        "next": "the source is as it was: start again with enable-mirroring",
    }
    if result.schedules_left:
        results["schedules-left"] = json.dumps(result.schedules_left)
    if locked:
        results["exclusive-lock-added"] = json.dumps(locked[:MAX_LISTED_RESULTS])
        results["exclusive-lock-note"] = (
            "enable-mirroring also gave these images exclusive-lock, which they keep (harmless; "
            "`rbd feature disable POOL/IMAGE exclusive-lock` with the source's admin key once "
            "no client has them open, if they must be exactly as before)"
        )
    return results


def rollback(session: Session, params: RollbackParams, log: Log) -> Results:
    """After the cutover: the source primary again, the destination secondary and resyncing."""
    ws, opts = prepare(session, params.pools, log, dry_run=params.dry_run)
    record = session.record
    result = migration.rollback(
        ws.source,
        ws.destination,
        ws.pools,
        ws.peer,
        opts,
        force=params.force,
        rolling_back=record.rolling_back,
        rolled_back=record.rolled_back,
        before_changes=lambda: session.save(session.record.rollback_started(list(ws.pools))),
        undone=lambda: session.save(session.record.rollback_undone(list(ws.pools))),
    )
    session.replace_report(None, ws.pools)
    if not opts.dry_run:
        session.save(session.record.rolled_back_pools(list(ws.pools)))
    return {
        "dry-run": opts.dry_run,
        "changes": json.dumps(result.changes[:MAX_LISTED_RESULTS]),
        "demoted": json.dumps(result.demoted),
        "promoted": json.dumps(result.promoted),
        "resync": json.dumps(result.resync),
        "discarded": json.dumps(result.discarded[:MAX_LISTED_RESULTS]),
        "discarded-count": len(result.discarded),
        "already-rolled-back": ",".join(result.already),
        "next": (
            "start the cloud on the source (it is still related to ceph-proxy); the destination "
            "copies every image again: status shows it. Then demote-promote again when ready, "
            "or abort to call the migration off"
        ),
    }


def verify(session: Session, params: VerifyParams, log: Log) -> Results:
    """Compare every image on the two clusters after the cutover; fail on any mismatch."""
    ws, opts = prepare(session, params.pools, log, changes=False)
    result = migration.verify(
        ws.source,
        ws.destination,
        ws.pools,
        opts,
        sample=params.sample,
        timeout=params.timeout,
        reads=params.max_workers or migration.READS_IN_FLIGHT,
    )
    results: Results = {
        "pools": ",".join(ws.pools),
        "mode": f"sample of {result.sample} chunk(s) per image" if result.sample else "full",
        "images": result.images,
        "bytes-read": result.bytes_read,
        "seconds": f"{result.seconds:.1f}",
        "throughput": f"{migration.human_bytes(result.throughput)}/s",
        "mismatches": json.dumps([m.as_dict() for m in result.mismatches[:MAX_LISTED_RESULTS]]),
        "mismatch-count": len(result.mismatches),
    }
    if result.mismatches:
        shown = "; ".join(str(m) for m in result.mismatches[:10])
        more = len(result.mismatches) - 10
        raise MigrationError(
            f"verify found {len(result.mismatches)} image(s) that differ: {shown}"
            + (f" ... and {more} more (see mismatches)" if more > 0 else ""),
            results=results,
        )
    results["next"] = "every image is the same on both clusters"
    return results


def pause(session: Session, params: NoParams, log: Log) -> Results:
    """Stop the daemon on purpose; hooks leave it stopped until `resume`."""
    del params
    session.stop_daemon("paused by the pause action")
    session.save(dataclasses.replace(session.record, paused=True))
    log("rbd-mirror stopped; hooks leave it stopped until resume")
    return {"paused": True, "next": "run resume to replay again"}


def resume(session: Session, params: NoParams, log: Log) -> Results:
    """Let the daemon run again (started at once when the relations are there)."""
    del params, log
    session.relation_data()  # NotReadyError without both keys
    session.save(dataclasses.replace(session.record, paused=False))
    session.keep_daemon()
    return {"paused": False, "daemon-running": session.daemon_running()}
