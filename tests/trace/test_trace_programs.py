"""Program generation: only validated integers reach bpftrace; capabilities adapt to the kernel."""

from __future__ import annotations

import itertools
import re
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.formats import KernelFormats, TracepointFormat, parse_format
from tcpdoctor.sources.ebpf.programs import CAPABILITIES, ProgramSpec, aggregate_maps, build_program
from tcpdoctor.sources.ebpf.runner import Filters, parse_record


def fake_tracefs(tmp_path: Path, present: dict[str, str]) -> KernelFormats:
    """A tracefs with only some tracepoints, each with the given format text."""
    for name, text in present.items():
        category, event = name.split(":")
        d = tmp_path / "events" / category / event
        d.mkdir(parents=True)
        (d / "format").write_text(text)
    return KernelFormats(root=tmp_path)


OLD_SEND_RESET = """name: tcp_send_reset
format:
\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:__u16 sport;\toffset:28;\tsize:2;\tsigned:0;
\tfield:__u16 dport;\toffset:30;\tsize:2;\tsigned:0;
\tfield:__u16 family;\toffset:32;\tsize:2;\tsigned:0;
\tfield:__u8 saddr[4];\toffset:34;\tsize:4;\tsigned:0;
\tfield:__u8 daddr[4];\toffset:38;\tsize:4;\tsigned:0;
\tfield:__u8 saddr_v6[16];\toffset:42;\tsize:16;\tsigned:0;
\tfield:__u8 daddr_v6[16];\toffset:58;\tsize:16;\tsigned:0;

print fmt: "sport=%hu dport=%hu", REC->sport, REC->dport
"""


@pytest.mark.parametrize("bad", ['8080; system("id")', "80", True, 0, 65536, -1, 8080.0])
def test_ports_must_be_integers_in_range(bad: object) -> None:
    with pytest.raises(InputError):
        ProgramSpec(ports=(bad,))  # type: ignore[arg-type]


@pytest.mark.parametrize("bad", [0, 3601, "5", True])
def test_interval_validated(bad: object) -> None:
    with pytest.raises(InputError):
        ProgramSpec(aggregate_every=bad)  # type: ignore[arg-type]


def test_unknown_capability_rejected() -> None:
    with pytest.raises(InputError, match="--what"):
        ProgramSpec(what=("resets", "everything"))


def test_old_kernel_layout_and_missing_tracepoints(tmp_path: Path) -> None:
    """A pre-6.10 tcp_send_reset (no reason, 4-byte addresses) and no kfree_skb: the program
    adapts and says what it cannot see."""
    fmts = fake_tracefs(tmp_path, {"tcp:tcp_send_reset": OLD_SEND_RESET})
    prog = build_program(ProgramSpec(what=("resets", "drops"), ports=(8080,)), fmts)
    assert "tracepoint:tcp:tcp_send_reset" in prog.text
    assert "args->reason" not in prog.text and "args->sport" in prog.text
    assert "$sport == 8080" in prog.text  # host order on this layout
    notes = " ".join(prog.notes)
    assert "no reset reason" in notes
    assert "kfree_skb is missing" in notes and "tcp_receive_reset is missing" in notes
    assert "kfree_skb" not in prog.text


def test_only_integers_in_program_text(tmp_path: Path) -> None:
    fmts = fake_tracefs(tmp_path, {"tcp:tcp_send_reset": OLD_SEND_RESET})
    prog = build_program(ProgramSpec(ports=(31337, 443)), fmts)
    # every literal in the filter is one of the validated ports (host order) or byte-swapped
    assert "31337" in prog.text and "443" in prog.text
    assert not re.search(r"\"[^\"]*31337", prog.text)


def test_cgroup_read_only_from_full_sockets(tmp_path: Path) -> None:
    """A reset's or drop's socket may be a timewait (6) or request (12) sock: sk_cgrp_data is
    read only under the sk_fullsock() test, on every probe that reads it."""
    fmts = fake_tracefs(tmp_path, {"tcp:tcp_send_reset": OLD_SEND_RESET})
    text = build_program(ProgramSpec(), fmts).text
    reads = [line for line in text.splitlines() if "sk_cgrp_data" in line]
    assert reads
    for line in reads:
        assert "skc_state != 6" in line and "skc_state != 12" in line, line


def test_aggregate_maps_follow_capabilities() -> None:
    assert aggregate_maps(ProgramSpec(what=("drops",), aggregate_every=5)) == ["@drops"]
    assert "@resets_sent" in aggregate_maps(ProgramSpec(aggregate_every=5))


def test_parse_record_and_filters(tmp_path: Path) -> None:
    from tcpdoctor.sources.ebpf.formats import parse_format

    fmt = parse_format(
        'print fmt: "%s", __print_symbolic(REC->reason, { 1, "NO_SOCKET" }, { 14, "TCP_STATE" })',
        "tcp",
        "tcp_send_reset",
    )
    line = (
        "RS\t2000000000\t10.0.0.2\t8080\t10.0.0.9\t51234\t1\t14\t77\t4026531840\t321\tapi\t1\t0\tswapper/0\n"
    )
    e = parse_record(line, {"tcp_send_reset": fmt}, start_ns=1_000_000_000)
    assert e is not None
    assert (e.kind, e.reason, e.state, e.time) == ("reset_sent", "TCP_STATE", "ESTABLISHED", 1.0)
    assert (e.local, e.remote, e.owner.pid, e.owner.comm, e.owner.cgroup_id) == (
        "10.0.0.2:8080",
        "10.0.0.9:51234",
        321,
        "api",
        77,
    )
    assert e.task_comm == "swapper/0"  # the softirq's task is kept as context, not as the owner
    assert parse_record("garbage\tline", {}, 0) is None
    assert Filters(pids=frozenset({321})).keep(e)
    assert not Filters(pids=frozenset({322})).keep(e)
    assert Filters(comms=frozenset({"api"}), ports=frozenset({8080})).keep(e)
    assert not Filters(ports=frozenset({9090})).keep(e)
    assert not Filters(pods=frozenset({"some-uid"})).keep(e)


# --- every generated program compiles with the real bpftrace (no attach: ``--emit-elf``) ---------
# Capabilities x {per-event, aggregate} x {with, without --port} x {the running kernel's formats,
# the older layouts recorded above}. bpftrace checks a program's ``args->`` fields against the
# live tracefs, so an old layout is compiled on the live tracepoint of the same category whose
# fields are a superset of it (same names and types): the pre-6.10 ``tcp_send_reset`` is field for
# field ``tcp_retransmit_skb`` without ``err``.

OLD_LAYOUTS = {"tcp:tcp_send_reset": OLD_SEND_RESET}
USED = (
    "sock:inet_sock_set_state",
    "tcp:tcp_destroy_sock",
    "tcp:tcp_send_reset",
    "tcp:tcp_receive_reset",
    "tcp:tcp_retransmit_skb",
    "skb:kfree_skb",
    "syscalls:sys_enter_getppid",
)


def live_root() -> Path:
    for base in (Path("/sys/kernel/tracing"), Path("/sys/kernel/debug/tracing")):
        if (base / "events").is_dir():
            return base
    subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    return Path("/sys/kernel/tracing")


def stand_in(old: TracepointFormat, live: Path) -> str:
    """A live tracepoint of ``old``'s category whose fields include all of ``old``'s."""
    for fmt_file in sorted((live / "events" / old.category).glob("*/format")):
        cand = parse_format(fmt_file.read_text(), old.category, fmt_file.parent.name)
        if all(
            n in cand.fields and (cand.fields[n].type, cand.fields[n].array) == (f.type, f.array)
            for n, f in old.fields.items()
        ):
            return cand.probe
    pytest.fail(f"no live tracepoint in {old.category} can stand in for the old {old.name}")


def layouts(tmp: Path) -> list[tuple[str, KernelFormats, dict[str, str]]]:
    """("live", formats, {}) and one tracefs per old layout, with the probes to retarget."""
    live = live_root()
    out: list[tuple[str, KernelFormats, dict[str, str]]] = [("live", KernelFormats(root=live), {})]
    for name, text in OLD_LAYOUTS.items():
        root = tmp / name.replace(":", "_")
        for used in USED:
            category, event = used.split(":")
            src = live / "events" / category / event / "format"
            dest = root / "events" / category / event / "format"
            dest.parent.mkdir(parents=True)
            dest.write_text(text if used == name else src.read_text())
        category, event = name.split(":")
        old = parse_format(text, category, event)
        out.append((name, KernelFormats(root=root), {old.probe: stand_in(old, live)}))
    return out


def specs() -> list[ProgramSpec]:
    out = []
    for what in [(c,) for c in CAPABILITIES] + [CAPABILITIES]:
        for agg, ports in itertools.product((None, 5), ((), (8080, 443))):
            out.append(ProgramSpec(what=what, ports=ports, aggregate_every=agg))
    return out


@pytest.mark.root
@pytest.mark.bpftrace
def test_every_generated_program_compiles(bpftrace: str, root: None, tmp_path: Path) -> None:
    bt = shutil.which("bpftrace") or bpftrace
    jobs: list[tuple[str, ProgramSpec, str]] = []
    for label, fmts, retarget in layouts(tmp_path):
        seen: set[str] = set()
        for spec in specs():
            text = build_program(spec, fmts).text
            for probe, live_probe in retarget.items():
                text = text.replace(f"{probe} ", f"{live_probe} ")
            if text and text not in seen:
                seen.add(text)
                jobs.append((label, spec, text))

    def compile_one(n: int) -> str | None:
        label, spec, text = jobs[n]
        res = subprocess.run(
            [bt, "--emit-elf", str(tmp_path / f"prog{n}.elf"), "-e", text],
            capture_output=True,
            text=True,
            timeout=120,
        )
        errors = [ln for ln in res.stderr.splitlines() if "ERROR" in ln and "RLIMIT_MEMLOCK" not in ln]
        if res.returncode != 0 or errors:
            return f"{label} {spec}: {' | '.join(errors) or res.stderr[-300:]}"
        return None

    assert len(jobs) >= 40
    with ThreadPoolExecutor(max_workers=2) as pool:  # bpftrace parses BTF for each: 2 at a time
        failures = [f for f in pool.map(compile_one, range(len(jobs))) if f]
    assert not failures, "\n".join(failures)
