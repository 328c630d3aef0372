"""What ceph-proxy (source) and ceph-mon (destination) send us, parsed and checked.

Values on these relations are plain strings (see the interfaces notes in the README). Parsing never
raises on missing data: it returns None, and the charm waits. Junk raises `RelationDataError`,
whose message names the key but never echoes a key's value.
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from ceph_cli import PoolInfo

_KEY = re.compile(r"^[A-Za-z0-9+/]{20,}={0,2}$")
_HOSTNAME = re.compile(r"^(?=.{1,253}$)[A-Za-z0-9]([A-Za-z0-9-]{0,62})(\.[A-Za-z0-9-]{1,63})*$")


class RelationDataError(ValueError):
    """A relation carries a value we cannot use; the message says which and what to fix."""


@dataclass(frozen=True)
class BrokerResponse:
    """ceph-mon's (or ceph-proxy's) reply to a broker request."""

    request_id: str
    exit_code: int
    stderr: str = ""


@dataclass(frozen=True)
class SourceData:
    """From ceph-proxy: our key on the source, its monitors (`host:port`), its broker reply."""

    key: str = field(repr=False)
    mon_hosts: tuple[str, ...]
    broker: BrokerResponse | None = None


@dataclass(frozen=True)
class DestinationData:
    """From ceph-mon: the key of `client.rbd-mirror.<unique_id>`, monitors, pools, broker reply."""

    key: str = field(repr=False)
    mon_hosts: tuple[str, ...]
    pools: frozenset[str]
    broker: BrokerResponse | None


@dataclass(frozen=True)
class PoolRequest:
    """A pool to ask ceph-mon for."""

    name: str
    pg_num: int
    replicas: int


def _check_key(value: str, where: str) -> str:
    if not _KEY.match(value):
        raise RelationDataError(f"{where}: the key is not a cephx secret")
    return value


def parse_mon_address(value: str, where: str) -> str:
    """Return a monitor address for a conf's `mon host`: `ip`, `ip:port`, `[v6]:port`, or host."""
    text = value.strip()
    host, port = text, ""
    if text.startswith("["):
        host, _, rest = text[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif text.count(":") == 1:
        host, port = text.split(":")
    if port and not (port.isdigit() and 0 < int(port) < 65536):
        raise RelationDataError(f"{where}: bad port in monitor address {text!r}")
    try:
        addr = ipaddress.ip_address(host)
    except ValueError:
        if not _HOSTNAME.match(host) or host.replace(".", "").isdigit():
            raise RelationDataError(f"{where}: {text!r} is not a monitor address") from None
        return f"{host}:{port}" if port else host
    shown = f"[{addr}]" if addr.version == 6 else str(addr)
    return f"{shown}:{port}" if port else shown


def _mon_hosts(values: Iterable[str], where: str) -> tuple[str, ...]:
    """Every address once, sorted.

    Juju lists related units in no fixed order, and a `mon host` line that changed order between
    hooks would restart the daemon for nothing.
    """
    return tuple(
        sorted({parse_mon_address(part, where) for value in values for part in value.split()})
    )


def sent_request_id(local_broker_req: str | None) -> str:
    """The request id of the broker request in our own databag ("" if none or unreadable)."""
    try:
        return str(json.loads(local_broker_req or "{}").get("request-id") or "")
    except (ValueError, AttributeError):
        return ""


def _reply_to(raw: str | None, where: str, request_id: str) -> BrokerResponse | None:
    """The broker reply if it answers `request_id`; a reply to an older request is ignored."""
    if not raw:
        return None
    reply = parse_broker_response(raw, where)
    return reply if reply.request_id == request_id else None


def parse_source(
    units: Iterable[Mapping[str, str]], unit_name: str = "", request_id: str = ""
) -> SourceData | None:
    """ceph-proxy's unit databags -> SourceData, or None until a key and addresses are there.

    `broker` is ceph-proxy's reply to our request `request_id` (None until it has answered it).
    """
    rsp_key = "broker-rsp-" + unit_name.replace("/", "-")
    for data in units:
        key, addrs = data.get("key", ""), data.get("ceph-public-address", "")
        if key and addrs:
            auth = data.get("auth", "cephx")
            if auth != "cephx":
                raise RelationDataError(f"source: auth {auth!r} is not supported (need cephx)")
            broker = _reply_to(data.get(rsp_key), "source", request_id)
            return SourceData(
                key=_check_key(key, "source"),
                mon_hosts=_mon_hosts([addrs], "source: ceph-public-address"),
                broker=broker,
            )
    return None


def parse_broker_response(raw: str, where: str) -> BrokerResponse:
    """Parse a `broker-rsp-<unit>` value."""
    try:
        rsp = json.loads(raw)
        return BrokerResponse(
            request_id=str(rsp.get("request-id") or ""),
            exit_code=int(rsp["exit-code"]),
            stderr=str(rsp.get("stderr", "")),
        )
    except (ValueError, KeyError, TypeError, AttributeError):
        raise RelationDataError(
            f"{where}: the broker response is not valid JSON with an exit-code"
        ) from None


def parse_destination(
    units: Iterable[Mapping[str, str]], unique_id: str, unit_name: str, request_id: str = ""
) -> DestinationData | None:
    """ceph-mon's unit databags -> DestinationData, or None until our key has arrived.

    `broker` is the reply to our request `request_id` from whichever mon unit answered it.
    """
    key, pools, broker = "", frozenset[str](), None
    addrs: list[str] = []
    rsp_key = "broker-rsp-" + unit_name.replace("/", "-")
    for data in units:
        if data.get("ceph-public-address"):
            addrs.append(data["ceph-public-address"])
        if data.get(f"{unique_id}_key"):
            key = _check_key(data[f"{unique_id}_key"], "destination")
        if data.get("pools"):
            try:
                pools = frozenset(json.loads(data["pools"]))
            except (ValueError, TypeError):
                raise RelationDataError("destination: `pools` is not a JSON object") from None
        broker = _reply_to(data.get(rsp_key), "destination", request_id) or broker
    if not key or not addrs:
        return None
    return DestinationData(
        key=key, mon_hosts=_mon_hosts(addrs, "destination"), pools=pools, broker=broker
    )


def broker_request(pools: Iterable[PoolRequest]) -> tuple[str, str]:
    """A CephBrokerRq JSON creating `pools` with application rbd; returns (request_id, json).

    The request id is a digest of the ops, so an unchanged request is not processed twice.
    """
    ops = [
        {
            "op": "create-pool",
            "name": p.name,
            "replicas": p.replicas,
            "pg_num": p.pg_num,
            "app-name": "rbd",
        }
        for p in sorted(pools, key=lambda p: p.name)
    ]
    return _broker_body(ops)


def pool_requests(
    names: Iterable[str], source_pools: Iterable[PoolInfo], replicas: int
) -> list[PoolRequest]:
    """Each of `names` as it is on the source (or with `replicas` from config when set)."""
    by_name = {p.name: p for p in source_pools}
    return [
        PoolRequest(name=n, pg_num=by_name[n].pg_num, replicas=replicas or by_name[n].size)
        for n in names
    ]


def _broker_body(ops: list[dict]) -> tuple[str, str]:
    """Wrap `ops` in a CephBrokerRq; the request id is a digest of the ops."""
    request_id = hashlib.sha1(
        json.dumps(ops, sort_keys=True).encode(), usedforsecurity=False
    ).hexdigest()
    body = {"api-version": 1, "request-id": request_id, "ops": ops}
    return request_id, json.dumps(body, sort_keys=True)


# rbd-mirror must be able to blocklist a dead instance of itself on the source to take over
# its image locks. ceph-proxy's caps for our key only allow the pre-Pacific `osd blacklist`.
SOURCE_KEY_CAPS = ["mon", "profile rbd", "osd", "profile rbd"]


def source_key_op(application: str) -> dict:
    """The broker op asking ceph-proxy to give `client.<application>` rbd profile caps."""
    return {"op": "set-key-permissions", "permissions": SOURCE_KEY_CAPS, "client": application}


def source_key_request(application: str) -> tuple[str, str]:
    """A broker request asking ceph-proxy to give `client.<application>` rbd profile caps."""
    return _broker_body([source_key_op(application)])
