"""Relation data parsing and the broker request: what the real charms send, and junk."""

from __future__ import annotations

import json

import pytest

from relations import (
    PoolRequest,
    RelationDataError,
    broker_request,
    parse_destination,
    parse_mon_address,
    parse_source,
)

KEY = "AQBsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrcsrc0=="


@pytest.mark.parametrize(
    "value, expected",
    [
        ("10.0.0.1", "10.0.0.1"),
        ("10.0.0.1:6789", "10.0.0.1:6789"),
        ("fe80::1", "[fe80::1]"),
        ("[fe80::1]:3300", "[fe80::1]:3300"),
        ("mon-1.example.com:6789", "mon-1.example.com:6789"),
    ],
)
def test_mon_addresses_are_normalised(value, expected):
    assert parse_mon_address(value, "x") == expected


@pytest.mark.parametrize(
    "value", ["10.0.0.1:0", "10.0.0.1:abc", "$(id)", "a;b", "999.1.1.1", "[::1]:70000"]
)
def test_junk_mon_addresses_are_rejected(value):
    with pytest.raises(RelationDataError):
        parse_mon_address(value, "x")


def test_source_splits_monitor_hosts_on_spaces():
    data = parse_source([{"key": KEY, "ceph-public-address": "10.0.0.1:6789 10.0.0.2:6789"}])
    assert data is not None and data.mon_hosts == ("10.0.0.1:6789", "10.0.0.2:6789")


def test_source_waits_for_key_and_addresses():
    assert parse_source([{"auth": "cephx"}]) is None
    assert parse_source([]) is None


def test_source_junk_key_error_does_not_echo_it():
    with pytest.raises(RelationDataError) as exc:
        parse_source([{"key": "not-a-key with spaces", "ceph-public-address": "10.0.0.1"}])
    assert "not-a-key" not in str(exc.value)


def test_destination_collects_every_mon_and_our_broker_reply():
    units = [
        {
            "ceph-public-address": "10.0.1.1",
            "h_key": KEY,
            "pools": json.dumps({"nova": {}}),
            "broker-rsp-app-0": json.dumps({"exit-code": 0, "request-id": "r"}),
        },
        {"ceph-public-address": "10.0.1.2"},
    ]
    data = parse_destination(units, "h", "app/0", request_id="r")
    assert data is not None and data.mon_hosts == ("10.0.1.1", "10.0.1.2")
    assert data.pools == frozenset({"nova"}) and data.broker and data.broker.exit_code == 0


def test_destination_waits_for_our_key():
    assert (
        parse_destination([{"ceph-public-address": "10.0.1.1", "other_key": KEY}], "h", "app/0")
        is None
    )


@pytest.mark.parametrize(
    "overrides, words",
    [
        ({"pools": "[not json"}, "pools"),
        ({"broker-rsp-app-0": "nope"}, "broker response"),
        ({"broker-rsp-app-0": json.dumps({"request-id": "x"})}, "broker response"),
    ],
)
def test_destination_malformed_values(overrides, words):
    data = {"ceph-public-address": "10.0.1.1", "h_key": KEY, **overrides}
    with pytest.raises(RelationDataError, match=words):
        parse_destination([data], "h", "app/0")


def test_broker_request_is_stable_and_creates_rbd_pools():
    pools = [PoolRequest("nova", 32, 3), PoolRequest("glance", 4, 3)]
    rid, body = broker_request(pools)
    rid2, body2 = broker_request(list(reversed(pools)))
    assert (rid, body) == (rid2, body2)
    req = json.loads(body)
    assert req["api-version"] == 1 and req["request-id"] == rid
    assert req["ops"][0] == {
        "op": "create-pool",
        "name": "glance",
        "replicas": 3,
        "pg_num": 4,
        "app-name": "rbd",
    }
