"""Tracepoint format parsing: fields and enum symbol tables (sample text and the running kernel)."""

from __future__ import annotations

import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.formats import MOUNT_HINT, KernelFormats, parse_format, state_name

# An excerpt of 6.18's tcp_send_reset format, with the reason table cut short and renumbered:
# the decoder must take numbers from the text, not from a list of its own.
SEND_RESET = """name: tcp_send_reset
ID: 2280
format:
\tfield:unsigned short common_type;\toffset:0;\tsize:2;\tsigned:0;
\tfield:int common_pid;\toffset:4;\tsize:4;\tsigned:1;

\tfield:const void * skbaddr;\toffset:8;\tsize:8;\tsigned:0;
\tfield:const void * skaddr;\toffset:16;\tsize:8;\tsigned:0;
\tfield:int state;\toffset:24;\tsize:4;\tsigned:1;
\tfield:enum sk_rst_reason reason;\toffset:28;\tsize:4;\tsigned:0;
\tfield:__u8 saddr[28];\toffset:32;\tsize:28;\tsigned:0;
\tfield:__u8 daddr[28];\toffset:60;\tsize:28;\tsigned:0;

print fmt: "skbaddr=%p state=%s reason=%s", REC->skbaddr, REC->state ? __print_symbolic(REC->state, \
{ TCP_ESTABLISHED, "TCP_ESTABLISHED" }, { TCP_SYN_SENT, "TCP_SYN_SENT" }) : "UNKNOWN", \
__print_symbolic(REC->reason, { 0, "NOT_SPECIFIED" }, { 1, "NO_SOCKET" }, { 7, "TCP_STATE" })
"""


def test_fields_and_arrays() -> None:
    fmt = parse_format(SEND_RESET, "tcp", "tcp_send_reset")
    assert set(fmt.fields) == {"skbaddr", "skaddr", "state", "reason", "saddr", "daddr"}
    assert fmt.fields["saddr"].array == 28 and fmt.fields["saddr"].offset == 32
    assert fmt.fields["reason"].type == "enum sk_rst_reason"
    assert fmt.fields["state"].signed and not fmt.fields["reason"].signed
    assert fmt.has("reason", "saddr") and not fmt.has("sport")


def test_enum_table_comes_from_the_text() -> None:
    fmt = parse_format(SEND_RESET, "tcp", "tcp_send_reset")
    assert fmt.symbol("reason", 1) == "NO_SOCKET"
    assert fmt.symbol("reason", 7) == "TCP_STATE"  # 14 on 6.18: the number is the file's, not ours
    assert fmt.symbol("reason", 99) == "99"
    assert fmt.value("reason", "TCP_STATE") == 7
    # symbolic TCP states (no numbers in the file) give no table entries
    assert "state" not in fmt.enums


def test_state_names() -> None:
    assert state_name(1) == "ESTABLISHED" and state_name(10) == "LISTEN" and state_name(0) == "NONE"


def test_missing_tracefs_names_the_mount_command(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tcpdoctor.sources.ebpf import formats

    monkeypatch.setattr(formats, "TRACEFS_CANDIDATES", (tmp_path / "nothing",))
    with pytest.raises(InputError) as err:
        KernelFormats()
    assert MOUNT_HINT in str(err.value) and "\n" not in str(err.value)


@pytest.fixture(scope="module")
def kernel_formats(require: Callable[[bool, str], None]) -> KernelFormats:
    import os

    require(os.geteuid() == 0, "reading tracefs needs root")
    if not Path("/sys/kernel/tracing/events").is_dir():
        subprocess.run(["mount", "-t", "tracefs", "tracefs", "/sys/kernel/tracing"], check=False)
    return KernelFormats()


def test_running_kernel_reasons(kernel_formats: KernelFormats) -> None:
    """The names the live tests rely on exist in this kernel's tables (numbers read, not assumed)."""
    rst = kernel_formats.get("tcp", "tcp_send_reset")
    drop = kernel_formats.get("skb", "kfree_skb")
    assert rst is not None and drop is not None
    if not rst.has("reason"):
        pytest.skip("kernel older than 6.10: tcp_send_reset has no reason")
    assert rst.value("reason", "NO_SOCKET") is not None
    assert drop.value("reason", "NETFILTER_DROP") is not None
    assert len(drop.enums["reason"]) > 50
    assert kernel_formats.get("tcp", "no_such_tracepoint") is None
