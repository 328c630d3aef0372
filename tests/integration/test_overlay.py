"""The bundle overlay users deploy, checked offline as far as `juju deploy --dry-run` would.

Runs without a controller (marked `offline`): the YAML's shape, the charm's endpoints and their
interfaces against metadata.yaml and the counterparts' (ceph-proxy `client` provides
ceph-client, ceph-mon `rbd-mirror` provides ceph-rbd-mirror), and the options against
config.yaml's names and types. The README shows the same overlay.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
OVERLAY = REPO / "bundles" / "migration-overlay.yaml"
APP = "rbd-mirror-migration"
# What the counterparts offer (charm-ceph-proxy and charm-ceph-mon metadata.yaml).
COUNTERPARTS = {"ceph-proxy:client": "ceph-client", "ceph-mon:rbd-mirror": "ceph-rbd-mirror"}
BUNDLE_KEYS = {"applications", "relations", "series", "machines", "description", "saas"}
APPLICATION_KEYS = {"charm", "num_units", "options", "to", "constraints", "base", "channel"}
CONFIG_TYPES = {"string": str, "int": int, "boolean": bool, "float": (int, float)}

pytestmark = pytest.mark.offline


def _load(path: Path) -> dict:
    return yaml.safe_load(path.read_text())


def test_the_overlay_has_the_shape_juju_accepts():
    overlay = _load(OVERLAY)
    assert set(overlay) <= BUNDLE_KEYS, set(overlay) - BUNDLE_KEYS
    app = overlay["applications"][APP]
    assert set(app) <= APPLICATION_KEYS, set(app) - APPLICATION_KEYS
    assert str(app["charm"]).startswith("./") and str(app["charm"]).endswith(".charm")
    assert isinstance(app["num_units"], int) and app["num_units"] >= 1
    for relation in overlay["relations"]:
        assert len(relation) == 2 and all(":" in end for end in relation), relation


def test_the_overlay_relates_our_endpoints_to_matching_interfaces():
    metadata = _load(REPO / "metadata.yaml")
    ours = {**metadata.get("requires", {}), **metadata.get("provides", {})}
    related = set()
    for left, right in _load(OVERLAY)["relations"]:
        mine, theirs = (left, right) if left.startswith(f"{APP}:") else (right, left)
        endpoint = mine.split(":", 1)[1]
        assert endpoint in ours, f"{mine}: no such endpoint in metadata.yaml"
        assert ours[endpoint]["interface"] == COUNTERPARTS[theirs], (mine, theirs)
        related.add(endpoint)
    assert related == set(ours), "every endpoint of the charm is related"


def test_the_overlay_options_exist_with_their_types():
    options = _load(REPO / "config.yaml")["options"]
    for name, value in _load(OVERLAY)["applications"][APP].get("options", {}).items():
        assert name in options, f"{name}: not in config.yaml"
        assert isinstance(value, CONFIG_TYPES[options[name]["type"]]), (name, value)


def test_the_readme_shows_the_overlay_users_deploy():
    readme = (REPO / "README.md").read_text()
    body = OVERLAY.read_text().split("applications:", 1)[1].strip()
    assert body in readme, "README's overlay differs from bundles/migration-overlay.yaml"


def test_the_overlay_on_the_integration_bundle_names_only_what_exists(tmp_path):
    """What the integration suite deploys: every related application and endpoint exists."""
    from tests.integration.cloud import cloud_bundle, merged, write_deployment

    artifact = tmp_path / "built.charm"
    artifact.write_bytes(b"PK")  # a stand-in: only its place next to the overlay is checked
    cloud_file, overlay_file = write_deployment(
        tmp_path / "deploy", cloud_bundle("fsid", "key", "10.0.0.1:6789"), artifact
    )
    overlay = _load(overlay_file)
    charm = overlay["applications"][APP]["charm"]
    assert (overlay_file.parent / charm).exists(), "the charm path resolves next to the overlay"
    bundle = merged(_load(cloud_file), overlay)
    for relation in bundle["relations"]:
        for end in relation:
            app, endpoint = end.split(":", 1)
            assert app in bundle["applications"], f"{end}: no application {app}"
            assert endpoint, end
    proxy = bundle["applications"]["ceph-proxy"]["options"]
    assert set(proxy) == {"fsid", "admin-key", "monitor-hosts"}
