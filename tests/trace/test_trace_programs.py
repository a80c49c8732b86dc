"""Program generation: only validated integers reach bpftrace; capabilities adapt to the kernel."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.formats import KernelFormats
from tcpdoctor.sources.ebpf.programs import ProgramSpec, aggregate_maps, build_program
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
