"""Network namespaces and veth links for the lab and the tests (root only).

Every object created carries a prefix (``tdlab-`` for the lab, ``tdtest-`` for tests)
so that leftovers can be found and removed (`tcpdoctor lab clean`).
"""

from __future__ import annotations

import os
import secrets
import signal
import subprocess
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field

from tcpdoctor.model import InputError


def is_root() -> bool:
    return os.geteuid() == 0


def _run(cmd: Sequence[str], check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(list(cmd), capture_output=True, text=True)
    if check and proc.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)}: {proc.stderr.strip()}")
    return proc


@dataclass
class Netns:
    name: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)

    def cmd(self, argv: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.name, *argv]

    def run(
        self, argv: Sequence[str], check: bool = True, timeout: float | None = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(self.cmd(argv), capture_output=True, text=True, timeout=timeout)
        if check and proc.returncode != 0:
            raise RuntimeError(f"[{self.name}] {' '.join(argv)}: {proc.stderr.strip()}")
        return proc

    def sh(self, script: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        return self.run(["sh", "-c", script], check=check)

    def popen(self, argv: Sequence[str], **kwargs: object) -> subprocess.Popen[bytes]:
        """Start a process in the namespace; it is killed when the namespace is deleted."""
        kwargs.setdefault("stdout", subprocess.DEVNULL)
        kwargs.setdefault("stderr", subprocess.DEVNULL)
        proc: subprocess.Popen[bytes] = subprocess.Popen(self.cmd(argv), start_new_session=True, **kwargs)  # type: ignore[call-overload]
        self.procs.append(proc)
        return proc

    def stop_processes(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                try:
                    os.killpg(proc.pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
                proc.wait(timeout=10)
        self.procs.clear()

    def delete(self) -> None:
        self.stop_processes()
        _run(["ip", "netns", "del", self.name], check=False)


class Topology:
    """Namespaces joined by veth pairs; everything goes away in :meth:`close`."""

    def __init__(self, prefix: str = "tdtest-") -> None:
        if not is_root():
            raise InputError("network namespaces need root (run as root, or with sudo)")
        self.prefix = prefix
        self.tag = secrets.token_hex(3)
        self.namespaces: list[Netns] = []
        self._links = 0

    def host(self, role: str) -> Netns:
        ns = Netns(f"{self.prefix}{self.tag}-{role}"[:40])
        _run(["ip", "netns", "add", ns.name])
        self.namespaces.append(ns)
        ns.run(["ip", "link", "set", "lo", "up"])
        return ns

    def link(
        self, a: Netns, a_addr: str | None, b: Netns, b_addr: str | None, mtu: int | None = None
    ) -> tuple[str, str]:
        """A veth pair between ``a`` and ``b`` with CIDR addresses (e.g. "10.10.1.1/24"); returns the names."""
        self._links += 1
        # interface names are limited to 15 characters
        a_if, b_if = f"td{self.tag}{self._links}a", f"td{self.tag}{self._links}b"
        _run(
            [
                "ip",
                "link",
                "add",
                a_if,
                "netns",
                a.name,
                "type",
                "veth",
                "peer",
                "name",
                b_if,
                "netns",
                b.name,
            ]
        )
        for ns, ifname, addr in ((a, a_if, a_addr), (b, b_if, b_addr)):
            if mtu:
                ns.run(["ip", "link", "set", ifname, "mtu", str(mtu)])
            if addr:
                ns.run(["ip", "addr", "add", addr, "dev", ifname])
            ns.run(["ip", "link", "set", ifname, "up"])
        return a_if, b_if

    def close(self) -> None:
        for ns in reversed(self.namespaces):
            ns.delete()
        self.namespaces.clear()


@contextmanager
def topology(prefix: str = "tdtest-") -> Iterator[Topology]:
    topo = Topology(prefix)
    try:
        yield topo
    finally:
        topo.close()


def leftovers(prefix: str = "tdlab-") -> list[str]:
    out = _run(["ip", "netns", "list"], check=False).stdout
    return [line.split()[0] for line in out.splitlines() if line.startswith(prefix)]
