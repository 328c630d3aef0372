"""After the cutover, the traps outside Ceph: what the cloud still says about the old cluster.

No ops here. Two facts of OpenStack's own code (README, "After the cutover"):

- glance's image locations name the cluster's fsid: `rbd://<fsid>/<pool>/<image>/snap`. nova
  (`RBDDriver.is_cloneable`) and cinder (`RBDDriver._is_cloneable`) clone an image only when
  that fsid is their own cluster's: until the locations are rewritten, every new disk and
  volume is a full copy. glance's API cannot change a location's fsid safely (`location-delete`
  deletes the image data on the cluster glance now uses, whatever fsid the URL names), so the
  rewrite is one UPDATE of glance's `image_locations` table.
- nova keeps each attached volume's monitors in its block-device mapping; `nova-manage
  volume_attachment refresh` (Xena and later) or shelve/unshelve replaces them.

`cloud_facts` reads what the operator needs for both: the two fsids and the new location of
every migrated glance image (an image with glance's snapshot `snap` that is not a clone).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from ceph_cli import CephCluster, CephError

GLANCE_SNAPSHOT = "snap"  # glance's RBD store snapshots every image it stores under this name


@dataclass(frozen=True)
class CloudFacts:
    """The two clusters' fsids and the migrated glance images' new locations."""

    old_fsid: str
    new_fsid: str
    glance_locations: tuple[str, ...]

    @property
    def sql(self) -> str:
        """The UPDATE of glance's database that rewrites every location of the old cluster."""
        if "unknown" in (self.old_fsid, self.new_fsid):
            return (
                "unknown: a cluster's fsid was not read; take it from `ceph fsid` on each "
                "cluster (the source's with its admin key) before rewriting glance's locations"
            )
        old, new = f"rbd://{self.old_fsid}/", f"rbd://{self.new_fsid}/"
        return (
            f"UPDATE image_locations SET value = REPLACE(value, '{old}', '{new}') "
            f"WHERE deleted = 0 AND value LIKE '{old}%';"
        )


def cloud_facts(src: CephCluster, dst: CephCluster, pools: Sequence[str]) -> CloudFacts:
    """Both fsids (the source's "unknown" when it does not answer) and the new locations."""
    try:
        old = src.fsid()
    except CephError:
        old = "unknown"
    new = dst.fsid()
    locations = []
    for pool in pools:
        for image in dst.preflight_images(pool):
            if GLANCE_SNAPSHOT in image.snaps and not image.parent:
                locations.append(f"rbd://{new}/{pool}/{image.name}/{GLANCE_SNAPSHOT}")
    return CloudFacts(old_fsid=old, new_fsid=new, glance_locations=tuple(sorted(locations)))
