"""The lab plays the charms we relate to: ceph-proxy (source) and ceph-mon (destination).

Each function returns the unit databag that the real charm would publish, with keys created on the
lab cluster with the real charm's caps (see ../shared/interfaces.md), and runs broker requests the
way charms.ceph's broker does for the ops we send.
"""

from __future__ import annotations

import json

from .cluster import HOST, Cluster

PROXY_CAPS = ("mon", 'allow r; allow command "osd blacklist"', "osd", "allow rwx")
MON_RBD_MIRROR_CAPS = (
    "mon",
    'allow profile rbd-mirror-peer; allow command "service dump"; allow command "service status"',
    "osd",
    "profile rbd",
    "mgr",
    "allow r",
)


def _key(cluster: Cluster, entity: str, caps: tuple[str, ...]) -> str:
    """The entity's key, created with `caps` the first time (later caps changes are kept)."""
    got = cluster.run(
        ["ceph", "--cluster", cluster.name, "-c", str(cluster.conf), "auth", "get-key", entity],
        check=False,
    )
    if got.returncode != 0:
        cluster.ceph("auth", "get-or-create", entity, *caps)
    return cluster.ceph("auth", "get-key", entity).strip()


def broker_rsp_key(unit_name: str) -> str:
    """`broker-rsp-<unit-with-dashes>`."""
    return "broker-rsp-" + unit_name.replace("/", "-")


def ceph_proxy_data(
    src: Cluster, application: str, *, broker_req: str | None = None, unit_name: str = ""
) -> dict[str, str]:
    """ceph-proxy's `client` databag for our application, over the lab's `src` cluster."""
    data = {
        "auth": "cephx",
        "key": _key(src, f"client.{application}", PROXY_CAPS),
        "ceph-public-address": f"{HOST}:{src.spec.mon_v1}",
    }
    if broker_req:
        data[broker_rsp_key(unit_name)] = run_broker_request(src, broker_req)
    return data


def ceph_mon_data(
    dst: Cluster, unique_id: str, *, unit_name: str, broker_req: str | None = None
) -> dict[str, str]:
    """ceph-mon's `rbd-mirror` databag for a unit that sent `unique_id` (and `broker_req`)."""
    data = {
        "auth": "cephx",
        "ceph-public-address": HOST,
        f"{unique_id}_key": _key(dst, f"client.rbd-mirror.{unique_id}", MON_RBD_MIRROR_CAPS),
    }
    if broker_req:
        data[broker_rsp_key(unit_name)] = run_broker_request(dst, broker_req)
    data["pools"] = json.dumps(pools_data(dst))
    return data


def pools_data(cluster: Cluster) -> dict[str, dict]:
    """ceph-mon's `pools` value: every pool with applications and parameters as strings."""
    out = {}
    for pool in cluster.ceph_json("osd", "pool", "ls", "detail"):
        out[pool["pool_name"]] = {
            "applications": {app: {} for app in pool.get("application_metadata", {})},
            "parameters": {"pg_num": str(pool["pg_num"]), "size": str(pool["size"])},
            "quota": {},
        }
    return out


def run_broker_request(cluster: Cluster, request: str) -> str:
    """Run a broker request's ops in order, stopping at the first failure; return the reply."""
    try:
        req = json.loads(request)
        req_id = req.get("request-id")
        for op in req["ops"]:
            if op.get("op") == "create-pool":
                _create_pool(cluster, op)
            elif op.get("op") == "set-key-permissions":
                # charms.ceph runs `ceph auth caps` and reports 0 even when it fails: so do we.
                run_cli = [
                    "ceph",
                    "--cluster",
                    cluster.name,
                    "-c",
                    str(cluster.conf),
                    "auth",
                    "caps",
                    f"client.{op['client']}",
                    *op["permissions"],
                ]
                cluster.run(run_cli, check=False)
            else:
                return json.dumps(
                    {
                        "exit-code": 1,
                        "request-id": req_id,
                        "stderr": f"Unknown operation '{op.get('op')}'",
                    }
                )
    except (ValueError, KeyError, TypeError) as exc:
        return json.dumps({"exit-code": 1, "stderr": f"bad broker request: {exc}"})
    return json.dumps({"exit-code": 0, "request-id": req_id})


def _create_pool(cluster: Cluster, op: dict) -> None:
    name = op["name"]
    if name in cluster.ceph("osd", "pool", "ls").split():
        return
    replicas = int(op.get("replicas", 3))
    osds = cluster.ceph_json("osd", "stat")["num_osds"]
    pg_num = min(int(op.get("pg_num") or 8), max(1, osds * 100 // replicas))
    cluster.ceph("osd", "pool", "create", name, str(pg_num), str(pg_num), "replicated")
    cluster.ceph("osd", "pool", "set", name, "size", str(replicas), "--yes-i-really-mean-it")
    if op.get("app-name"):
        cluster.ceph("osd", "pool", "application", "enable", name, op["app-name"])
