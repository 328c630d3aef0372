"""The Ceph releases a lab cluster can run, each from its own Debian root (a debootstrap chroot).

The host's own packages are Pacific 16.2 (Debian bookworm). Debian's archive also carries Reef 18.2
(trixie) and Tentacle 20.2 (sid): `ensure_root(release)` builds that release's root once with
`debootstrap --variant=minbase` and apt inside it, and caches it under `roots_dir()` (default
/var/cache/rbd-mirror-lab/roots, or $RBD_MIRROR_LAB_ROOTS) in a directory named for the
release and a hash of what it is built from; it is built only when that directory has no
`.ready` marker. Nothing here touches the host's packages or apt sources.

`wrap(root, argv, binds)` runs a command from a root: a new mount namespace (gone with the last
process in it) with /proc, /sys, /dev, /tmp and each bind at the same path inside the root, then
`chroot`. Every step execs the next, so the PID is the command's own: the lab stops daemons by PID.

A fix a release needs to run in the lab stays here (Reef's mgr import, below), never in the charm.
"""

from __future__ import annotations

import fcntl
import hashlib
import os
import shlex
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from .install import PACKAGES  # the same packages as the host's, from the release's suite
from .procs import LabError, run

MIRROR = "http://deb.debian.org/debian"
BUILD_TIMEOUT_S = 1200.0
LAB_FIX_VERSION = 1  # bump when _lab_fixes changes: cached roots are then rebuilt


@dataclass(frozen=True)
class Release:
    """A Ceph release the lab can run: where its packages come from, and its lab-only quirks."""

    name: str
    suite: str | None  # Debian suite of its root; None: the host's own packages
    check_valid_until: bool = True  # sid's index may be past its Valid-Until on this clock
    mgr_pool: str = ".mgr"  # the pool the mgr creates for itself once it is up

    @property
    def on_host(self) -> bool:
        """True for the release of the host's own packages (no root)."""
        return self.suite is None


RELEASES = {
    r.name: r
    for r in (
        Release("pacific", None, mgr_pool="device_health_metrics"),
        Release("reef", "trixie"),
        Release("tentacle", "sid", check_valid_until=False),
    )
}
HOST_RELEASE = RELEASES["pacific"]


def release(name: str) -> Release:
    """The release called `name` (e.g. `reef`), or LabError naming the known ones."""
    try:
        return RELEASES[name]
    except KeyError:
        raise LabError(
            f"unknown Ceph release {name!r}; the lab knows {sorted(RELEASES)}"
        ) from None


def roots_dir() -> Path:
    """Where built roots are cached: $RBD_MIRROR_LAB_ROOTS or /var/cache/rbd-mirror-lab/roots."""
    return Path(os.environ.get("RBD_MIRROR_LAB_ROOTS", "/var/cache/rbd-mirror-lab/roots"))


def root_of(rel: Release) -> Path:
    """The root directory of a release (not necessarily built yet), named for its inputs.

    A change of what a root is built from gives a new directory: a root in use by a running lab
    is never rebuilt under it. Older ones stay until removed by hand.
    """
    if rel.on_host:
        raise LabError(f"{rel.name} runs from the host's own packages, not a root")
    return roots_dir() / f"{rel.name}-{_inputs(rel)}"


def _inputs(rel: Release) -> str:
    """What a root is built from; a cached root built from anything else is rebuilt."""
    text = f"{rel.suite} {MIRROR} {' '.join(PACKAGES)} fixes={LAB_FIX_VERSION}"
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def ensure_root(rel: Release) -> Path:
    """The release's root, built first if it is missing (a minute or so, once per machine)."""
    root = root_of(rel)
    if (root / ".ready").exists():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    with open(root.parent / f"{rel.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test run may be building it
        if not (root / ".ready").exists():
            _build(rel, root)
    return root


def _build(rel: Release, root: Path) -> None:
    assert rel.suite is not None
    if shutil.which("debootstrap") is None:
        raise LabError(
            "debootstrap is missing: run scripts/bootstrap (apt-get install debootstrap)"
        )
    start = time.monotonic()
    partial = root.with_name(root.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    shutil.rmtree(root, ignore_errors=True)
    print(f"lab: building the {rel.name} root ({rel.suite}) in {root}", flush=True)
    # In a mount namespace of its own: what debootstrap mounts inside the root (proc, sys) goes
    # with it, even when the timeout kills it before its own clean-up.
    run(
        [
            "/usr/bin/unshare",
            "--mount",
            "--propagation",
            "private",
            "--",
            "debootstrap",
            "--variant=minbase",
            rel.suite,
            str(partial),
            MIRROR,
        ],
        timeout=BUILD_TIMEOUT_S,
    )
    policy = partial / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")  # packages must not start services
    policy.chmod(0o755)
    apt = ["apt-get", "-o", "Dpkg::Use-Pty=0"]
    if not rel.check_valid_until:
        apt += ["-o", "Acquire::Check-Valid-Until=false"]
    env = {"DEBIAN_FRONTEND": "noninteractive", "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"}
    run(wrap(partial, [*apt, "update", "-qq"]), timeout=BUILD_TIMEOUT_S, env=env)
    install = [*apt, "install", "-y", "-qq", "--no-install-recommends", *PACKAGES]
    run(wrap(partial, install), timeout=BUILD_TIMEOUT_S, env=env)
    run(wrap(partial, ["apt-get", "clean"]), env=env)
    _lab_fixes(rel, partial)
    version = run(wrap(partial, ["ceph", "--version"])).stdout.decode().strip()
    (partial / ".ready").write_text(
        f"{rel.name} inputs={_inputs(rel)} built in {time.monotonic() - start:.0f}s: {version}\n"
    )
    partial.rename(root)
    print(f"lab: {rel.name} root ready in {time.monotonic() - start:.0f}s", flush=True)


def _lab_fixes(rel: Release, root: Path) -> None:
    """Lab-only fixes a release needs to run here.

    Reef's mgr (Debian trixie) fails 11 modules, rbd_support among them, with "PyO3 modules do
    not yet support subinterpreters" from a top-level `import bcrypt` in mgr_util.py (Ceph
    tracker #64213); only password_hash() uses it, so it is imported there instead.
    """
    if rel.name != "reef":
        return
    util = root / "usr/share/ceph/mgr/mgr_util.py"
    text = util.read_text()
    if "\nimport bcrypt\n" not in text:
        raise LabError(f"{util}: no top-level `import bcrypt` to make lazy; check the lab fix")
    text = text.replace("\nimport bcrypt\n", "\n", 1)
    lines = text.splitlines(keepends=True)
    at = next(i for i, line in enumerate(lines) if line.startswith("def password_hash("))
    while not lines[at].rstrip().endswith(":"):
        at += 1
    lines.insert(at + 1, "    import bcrypt  # lab: imported here, not at the top (#64213)\n")
    util.write_text("".join(lines))


def wrap(root: Path, argv: list[str], binds: tuple[Path, ...] = ()) -> list[str]:
    """`argv` run from `root` in its own mount namespace, with `binds` at the same paths."""
    mounts = [
        f"mount --rbind /proc {shlex.quote(str(root / 'proc'))}",
        f"mount --rbind /sys {shlex.quote(str(root / 'sys'))}",
        f"mount --rbind /dev {shlex.quote(str(root / 'dev'))}",
        f"mount --bind /tmp {shlex.quote(str(root / 'tmp'))}",
    ]
    for path in binds:
        inside = shlex.quote(str(root / str(path).lstrip("/")))
        kind = "-d" if path.is_dir() else "-f"
        make = (
            f"mkdir -p {inside}"
            if path.is_dir()
            else f"mkdir -p $(dirname {inside}); touch {inside}"
        )
        mounts.append(f"{{ [ {kind} {inside} ] || {{ {make}; }}; }}")
        mounts.append(f"mount --bind {shlex.quote(str(path))} {inside}")
    script = " && ".join(mounts) + f' && exec /usr/sbin/chroot {shlex.quote(str(root))} "$@"'
    unshare = ["/usr/bin/unshare", "--mount", "--propagation", "private", "--"]
    return [*unshare, "/bin/sh", "-c", script, "sh", *argv]
