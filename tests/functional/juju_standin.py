"""A stand-in Juju model on the lab: units of the packed charm, run through `./dispatch`.

Each unit is a `tests.dispatch.unit_dir.Unit` (its own directory, /etc/ceph, /run/ceph, and with
a host name its own UTS namespace, so its own `unique_id`). The model plays the other side of
both relations from what every unit has published, as the real charms would:
- ceph-proxy/0 (source): the `client.<app>` key with ceph-proxy's caps, its mon address, and a
  `broker-rsp-<unit>` for each unit's broker request (run on `src`);
- ceph-mon/0 (destination): one `<unique_id>_key` per unit that sent a `unique_id`, the
  `pools` map, and a `broker-rsp-<unit>` per unit (run on `dst`: the pools are created).
After a remote bag changes, the unit gets `<endpoint>-relation-changed`, as Juju would do.
"""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from tests.dispatch.unit_dir import REPO, Unit
from tests.functional.lab import Lab
from tests.functional.lab.charms import (
    broker_rsp_key,
    ceph_mon_data,
    ceph_proxy_data,
    run_broker_request,
)

APP = "rbd-mirror-migration"
SOURCE, DESTINATION, PEERS = "source:1", "destination:2", "peers:0"
REMOTE = {SOURCE: ("ceph-proxy", "ceph-proxy/0"), DESTINATION: ("ceph-mon", "ceph-mon/0")}


def config_defaults() -> dict:
    """What `config-get --format=json` returns before any `juju config`: every default."""
    options = yaml.safe_load((REPO / "config.yaml").read_text())["options"]
    return {name: o["default"] for name, o in options.items() if "default" in o}


class Model:
    """The units of the application on the lab, and the remote charms' answers."""

    def __init__(self, lab: Lab, root: Path, python: Path, venv: Path, artifact: Path | None):
        self.lab, self.root, self.python, self.venv, self.artifact = (
            lab,
            root,
            python,
            venv,
            artifact,
        )
        self.units: list[Unit] = []
        self._replies: dict[tuple[str, str], str] = {}

    def add_unit(self, hostname: str = "", *, leader: bool | None = None) -> Unit:
        """A new unit directory; the first unit is the leader unless told otherwise."""
        number = len(self.units)
        unit = Unit(
            self.root / f"unit-{number}",
            self.python,
            self.venv,
            artifact=self.artifact,
            lab_services=self.lab.services_dir,
            hostname=hostname,
            number=number,
        ).build()
        if not (leader if leader is not None else number == 0):
            (unit.state / "leader").unlink()
        unit.set_config(config_defaults())
        unit.set_relations({PEERS: _relation("peers", APP)})
        self.units.append(unit)
        return unit

    def _join_peers(self, unit: Unit) -> None:
        """The peer relation: each existing unit and the new one see each other join."""
        expect_ok(unit.relation_hook(PEERS, "created"))
        for other in self.units:
            if other is unit:
                continue
            for a, b in ((unit, other), (other, unit)):
                relations = a.relations()
                relations[PEERS]["units"][b.name] = b.relations()[PEERS]["local"]
                relations[PEERS]["app"] = self._leader().relations()[PEERS]["app"]
                a.set_relations(relations)
                expect_ok(a.relation_hook(PEERS, "joined", b.name))
                expect_ok(a.relation_hook(PEERS, "changed", b.name))

    def _leader(self) -> Unit:
        return next(u for u in self.units if (u.state / "leader").exists())

    def deploy(self, unit: Unit) -> None:
        """install, the peer relation, config-changed, start: a new machine's first hooks."""
        expect_ok(unit.hook("install"))
        self._join_peers(unit)
        expect_ok(
            unit.hook(
                "leader-settings-changed" if unit is not self._leader() else "leader-elected"
            )
        )
        for hook in ("config-changed", "start"):
            expect_ok(unit.hook(hook))

    def relate(self, unit: Unit) -> None:
        """Both relations created, joined and answered until nothing changes any more."""
        relations = unit.relations()
        for rel, (app, _) in REMOTE.items():
            relations[rel] = _relation(rel.split(":")[0], app)
        unit.set_relations(relations)
        for rel, (_, remote_unit) in REMOTE.items():
            expect_ok(unit.relation_hook(rel, "created"))
            relations = unit.relations()
            relations[rel]["units"][remote_unit] = {}
            unit.set_relations(relations)
            expect_ok(unit.relation_hook(rel, "joined", remote_unit))
        self.settle()

    def settle(self, rounds: int = 5) -> None:
        """Play the remote charms until no unit's view of them changes (bounded)."""
        for _ in range(rounds):
            changed = self._share_the_leaders_bag()
            bags = self._remote_bags()
            for unit in self.units:
                relations = unit.relations()
                for rel, (_, remote_unit) in REMOTE.items():
                    if rel not in relations or remote_unit not in relations[rel]["units"]:
                        continue
                    if relations[rel]["units"][remote_unit] != bags[rel]:
                        relations[rel]["units"][remote_unit] = bags[rel]
                        unit.set_relations(relations)
                        expect_ok(unit.relation_hook(rel, "changed", remote_unit))
                        relations = unit.relations()
                        changed = True
            if not changed:
                return
        raise AssertionError(f"the relations did not settle in {rounds} rounds")

    def _share_the_leaders_bag(self) -> bool:
        """The peer bags, as each unit and the leader (application bag) wrote them, everywhere."""
        if not self.units:
            return False
        shared = self._leader().relations()[PEERS]["app"]
        own = {u.name: u.relations()[PEERS]["local"] for u in self.units}
        changed = False
        for unit in self.units:
            relations = unit.relations()
            peers = relations[PEERS]
            others = {name: bag for name, bag in own.items() if name != unit.name}
            if peers["app"] != shared or peers["units"] != others:
                writer = next(
                    (n for n in others if peers["units"].get(n) != others[n]),
                    self._leader().name,
                )
                peers["app"], peers["units"] = shared, others
                unit.set_relations(relations)
                expect_ok(unit.relation_hook(PEERS, "changed", writer))
                changed = True
        return changed

    def _remote_bags(self) -> dict[str, dict[str, str]]:
        """ceph-proxy/0's and ceph-mon/0's bags, from what every unit published."""
        proxy = ceph_proxy_data(self.lab.src, APP)
        replies: dict[str, str] = {}
        unique_ids: dict[str, str] = {}
        for unit in self.units:
            relations = unit.relations()
            src_local = relations.get(SOURCE, {}).get("local", {})
            dst_local = relations.get(DESTINATION, {}).get("local", {})
            if src_local.get("broker_req"):
                proxy[broker_rsp_key(unit.name)] = self._reply("src", src_local["broker_req"])
            if dst_local.get("broker_req"):
                replies[broker_rsp_key(unit.name)] = self._reply("dst", dst_local["broker_req"])
            if dst_local.get("unique_id"):
                unique_ids[unit.name] = dst_local["unique_id"]
        mon: dict[str, str] = {}
        for name, unique_id in unique_ids.items():  # after the requests: `pools` is current
            mon.update(ceph_mon_data(self.lab.dst, unique_id, unit_name=name))
        return {SOURCE: proxy, DESTINATION: mon | replies if mon else {}}

    def _reply(self, side: str, request: str) -> str:
        """The broker's reply to `request`, run once per distinct request."""
        key = (side, request)
        if key not in self._replies:
            cluster = self.lab.src if side == "src" else self.lab.dst
            self._replies[key] = run_broker_request(cluster, request)
        return self._replies[key]

    def remove_unit(self, unit: Unit) -> None:
        """`juju remove-unit`: relations departed and broken, then stop and remove.

        The other units see it depart from the peer relation.
        """
        unit.set_goal_units({u.name: "dying" if u is unit else "active" for u in self.units})
        for rel in (*REMOTE, PEERS):
            unit.depart_and_break(rel, departing=unit.name)
        for hook in ("stop", "remove"):
            expect_ok(unit.hook(hook))
        self.units.remove(unit)
        for other in self.units:
            relations = other.relations()
            relations[PEERS]["units"].pop(unit.name, None)
            other.set_relations(relations)
            expect_ok(other.relation_hook(PEERS, "departed", unit.name, departing=unit.name))


def _relation(endpoint: str, remote_app: str) -> dict:
    """A relation as the stand-in hook tools keep it (see tests/dispatch/hooktool.py)."""
    return {
        "endpoint": endpoint,
        "remote-app": remote_app,
        "units": {},
        "local": {},
        "app": {},
        "remote-app-data": {},
    }


def expect_ok(run) -> None:
    """A hook or action that must exit 0 (an action's own failure is action-fail, rc 0)."""
    assert run.rc == 0, f"{run.name} failed (rc {run.rc}):\n{run.output[-3000:]}"


def results(unit: Unit) -> dict[str, str]:
    """The last action's results; fails with the action's failure message if it failed."""
    failure = unit.failure()
    assert failure is None, f"action failed: {failure}"
    return unit.results()


def last_status(unit: Unit) -> dict:
    """The unit status the charm set last."""
    statuses = unit.statuses()
    return statuses[-1] if statuses else {}


def as_json(value: str):
    """An action result that holds JSON."""
    return json.loads(value)
