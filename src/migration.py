"""The migration workflow, start to end, over two cluster clients: one module a phase. No ops.

This module only gathers the public names; each phase is in a file of its own:
- pool_selection.py: which pools a run works on (also without the source);
- preflight.py: phase 0, what will go wrong, told before enable-mirroring changes anything;
- report.py: both sides read once, and every verdict derived from the fields;
- setup_mirroring.py, cutover.py, teardown.py: phases 1, 3 and 4 below;
- abort.py, rollback.py: the ways back (before the cutover, and between it and teardown);
- cloud_steps.py: after teardown, what the cloud still says about the old cluster (fsids);
- verify.py: the proof, every image compared on both clusters once the source is demoted;
- workflow.py: the error, the run options and the peer they share;
- mirror_modes.py: what differs between journal and snapshot mirroring, in one table: the
  phases read the same for both and ask the pool's `MirrorMode`.

1. `enable_mirroring`: the mode's mirroring on the source (journaling, or snapshot mirroring
   and a snapshot schedule); the same pool mode and one rx-only peer on the destination. The
   rbd-mirror daemon (daemon.py) then copies every image.
2. `status`: both sides of every pool read once (`PoolReport`), and what each action may do
   derived from the fields of that report, never from the wording of a message:
   `cutover_blockers`, `teardown_blockers`, `PoolReport.torn_down`, `phase`.
3. `demote_promote`: the cutover. Preflight, demote the source, promote the destination
   (retried while librbd answers the mode's "not yet"), verify. Safety rule: a non-forced
   promote succeeds only once the destination has replayed the source's demotion, which comes
   after every write to the image (in snapshot mode, the demote's last mirror snapshot);
   so "caught up" is proven by librbd itself, not by the lagging `entries_behind_primary`.
   `force` is for a source that does not answer at all; with a source that answers it refuses.
4. `teardown`: only once every source image is on the destination and primary there and none is
   primary on the source; remove the peers, disable mirroring clones-before-parents, confirm
   journaling is gone. The charm stops the daemon once every migrated pool is torn down.
Two ways back: `abort` before the cutover (the source as it was, the destination emptied) and
`rollback` after it, before teardown (the source primary again, proven unwritten destination,
which then resyncs). The journal guard (`report.journal_backlog`) watches the source's journals
while the daemon replays them.
Every step is idempotent: re-running after an interruption finishes the job. While any image is
primary on both clusters (split brain) every step that changes something refuses: which copy to
keep is the operator's decision (`split_brain_advice`).
"""

from abort import AbortResult, abort
from ceph_cli import ImageStatus, parse_description
from cloud_steps import CloudFacts, cloud_facts
from cutover import CutoverResult, demote_promote, snapshot_clones
from pool_selection import narrowed, pools_without_source, select_pools
from preflight import Finding, Preflight, preflight
from report import (
    PoolReport,
    StatusReport,
    attention,
    cutover_blockers,
    finished,
    human_bytes,
    journal_backlog,
    phase,
    split_brain_advice,
    status,
    teardown_blockers,
)
from rollback import RollbackResult, rollback
from setup_mirroring import SELF_SCHEDULED, PoolEnableResult, enable_mirroring, refuse_to_enable
from teardown import TeardownResult, teardown
from verify import READS_IN_FLIGHT, Mismatch, VerifyResult, verify
from workflow import MigrationError, Options, PeerSpec

__all__ = [
    "AbortResult",
    "CloudFacts",
    "Finding",
    "CutoverResult",
    "ImageStatus",
    "MigrationError",
    "Options",
    "PeerSpec",
    "PoolEnableResult",
    "PoolReport",
    "Preflight",
    "READS_IN_FLIGHT",
    "RollbackResult",
    "SELF_SCHEDULED",
    "StatusReport",
    "TeardownResult",
    "VerifyResult",
    "Mismatch",
    "abort",
    "attention",
    "cloud_facts",
    "cutover_blockers",
    "demote_promote",
    "enable_mirroring",
    "finished",
    "human_bytes",
    "journal_backlog",
    "narrowed",
    "parse_description",
    "phase",
    "pools_without_source",
    "preflight",
    "refuse_to_enable",
    "rollback",
    "select_pools",
    "split_brain_advice",
    "snapshot_clones",
    "status",
    "teardown",
    "teardown_blockers",
    "verify",
]
