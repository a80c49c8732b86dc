"""bpftrace programs, generated per capability from templates that adapt to the running kernel.

Only validated integers (ports, the aggregation interval) are ever placed in a program's
text: no string from the user reaches bpftrace. Process, comm, cgroup and pod filters are
applied in Python after the event, on the socket's owner (see :mod:`.runner`).

Per-event programs print one tab-separated record per event (:data:`COLUMNS`); aggregate
programs keep counts in kernel maps and print them every N seconds (:mod:`.aggregate`).

Attribution is by the socket, never by the task that happens to run the tracepoint
(handshakes and most resets run in softirq under an unrelated task): the socket's cgroup
(``sk->sk_cgrp_data.cgroup->kn->id``), its network namespace
(``sk->__sk_common.skc_net.net->ns.inum``) and its owner, recorded in process context when
the socket entered SYN_SENT (connect) or LISTEN (listen), and inherited by accepted children
from their listener.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass, field

from tcpdoctor.model import InputError
from tcpdoctor.sources.ebpf.formats import KernelFormats, TracepointFormat

CAPABILITIES = ("resets", "drops", "retrans", "overflow", "lifetimes", "connect")

# One per-event record: kind then these columns, tab-separated (see runner.parse_record).
COLUMNS = (
    "kind",
    "ns",
    "saddr",
    "sport",
    "daddr",
    "dport",
    "state",
    "reason",
    "cgroup",
    "netns",
    "owner_pid",
    "owner_comm",
    "value",
    "pid",
    "comm",
)

# TCP state numbers (include/net/tcp_states.h, kernel ABI)
_SYN_SENT, _SYN_RECV, _ESTABLISHED, _CLOSE, _LISTEN = 2, 3, 1, 7, 10


def validate_port(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 65535:
        raise InputError(f"--port {value!r}: expected a TCP port number 1-65535")
    return value


def validate_interval(value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= 3600:
        raise InputError(f"--aggregate {value!r}: expected whole seconds, 1-3600")
    return value


def _net16(port: int) -> int:
    """A port as the kernel stores it in a sockaddr or TCP header (network byte order) read on x86."""
    return ((port & 0xFF) << 8) | (port >> 8)


@dataclass
class ProgramSpec:
    """What to trace: capabilities, in-kernel port filter, and the mode."""

    what: tuple[str, ...] = CAPABILITIES
    ports: tuple[int, ...] = ()
    aggregate_every: int | None = None  # seconds; None = per-event records

    def __post_init__(self) -> None:
        unknown = [w for w in self.what if w not in CAPABILITIES]
        if unknown:
            raise InputError(f"--what {','.join(unknown)}: expected some of {','.join(CAPABILITIES)}")
        self.ports = tuple(validate_port(p) for p in self.ports)
        if self.aggregate_every is not None:
            self.aggregate_every = validate_interval(self.aggregate_every)


@dataclass
class Program:
    text: str
    probes: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # fallbacks and missing tracepoints, said to the user
    formats: dict[str, TracepointFormat] = field(default_factory=dict)  # "tcp_send_reset" -> format


def _port_test(ports: Iterable[int], a: str, b: str, network_order: bool = False) -> str:
    terms = []
    for p in ports:
        v = _net16(p) if network_order else p
        terms += [f"{a} == {int(v)}", f"{b} == {int(v)}"]
    return " || ".join(terms)


def _guard(test: str) -> str:
    return f"if ({test or 1}) "


# TCP_TIME_WAIT and TCP_NEW_SYN_RECV: the "socket" is an inet_timewait_sock or a request_sock,
# which share only struct sock_common with a full socket (include/net/sock.h sk_fullsock()).
_TIME_WAIT, _NEW_SYN_RECV = 6, 12


def _sk_attr(sk: str = "$sk", indent: str = "  ", fallback_ns: str = "0", gone: bool = True) -> str:
    """Cgroup, netns and owner of ``sk`` (may be NULL, a time-wait or a request sock).

    The cgroup is read only from a full socket: ``sk_cgrp_data`` lies past the end of an
    inet_timewait_sock or request_sock. The netns is in ``sock_common``, valid for all three.
    The owner is the live entry, else the one kept when the socket was destroyed (a reset or
    drop that follows tcp_done(), e.g. TCP_ABORT_ON_DATA, still names its process)."""
    i = indent
    kept = f"{i}if ($opid == 0) {{ $opid = @gpid[{sk}]; $ocomm = @gcomm[{sk}]; }}\n" if gone else ""
    return (
        f"{i}$cg = (uint64)0; $ns = (uint64){fallback_ns};\n"
        f"{i}if ((uint64){sk} != 0) {{\n"
        f"{i}  $ns = {sk}->__sk_common.skc_net.net->ns.inum;\n"
        f"{i}  if ({sk}->__sk_common.skc_state != {_TIME_WAIT} && {sk}->__sk_common.skc_state != {_NEW_SYN_RECV}) "
        f"{{ $cg = {sk}->sk_cgrp_data.cgroup->kn->id; }}\n"
        f"{i}}}\n"
        f"{i}$opid = @opid[{sk}]; $ocomm = @ocomm[{sk}];\n" + kept
    )


_SK_ATTR = _sk_attr()

_PORTS_TP = "  $sport = args->sport; $dport = args->dport;\n"

_ADDRS_TP = """  if (args->family == 2) { $s = ntop(args->saddr); $d = ntop(args->daddr); }
  else { $s = ntop(args->saddr_v6); $d = ntop(args->daddr_v6); }
"""


def _record(kind: str, sport: str, dport: str, state: str, reason: str, value: str) -> str:
    return (
        f'printf("{kind}\\t%llu\\t%s\\t%d\\t%s\\t%d\\t%d\\t%d\\t%llu\\t%u\\t%d\\t%s\\t%lld\\t%d\\t%s\\n", '
        f"nsecs, $s, {sport}, $d, {dport}, {state}, {reason}, $cg, $ns, $opid, $ocomm, {value}, pid, comm);"
    )


def _ownership(state_fmt: TracepointFormat, agg: bool) -> str:
    """Socket ownership bookkeeping on inet_sock_set_state (always attached when sockets are traced)."""
    # Socket addresses are reused as soon as a socket is freed: every entry is (re)written when a
    # socket starts its life, so nothing stale from a previous socket at that address survives.
    # tcp_done() destroys a socket before its caller sends the reset (tcp_rcv_state_process ->
    # tcp_reset -> tcp_done, then tcp_v4_do_rcv sends the RST and frees the segment): the owner
    # moves to @gpid/@gcomm on destroy and stays there until a new socket is born at that address.
    born = "" if agg else "@born[$sk] = nsecs;"
    srv = "" if agg else "@srv[$sk] = 1;"
    not_srv = "" if agg else "delete(@srv[$sk]);"
    return f"""tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {{
  $sk = (struct sock *)args->skaddr; $sport = args->sport; $dport = args->dport;
  $old = args->oldstate; $new = args->newstate;
  $ns = $sk->__sk_common.skc_net.net->ns.inum;
  if ($new == {_SYN_SENT} || $new == {_SYN_RECV} || $new == {_LISTEN}) {{ delete(@gpid[$sk]); delete(@gcomm[$sk]); }}
  if ($new == {_SYN_SENT}) {{ @opid[$sk] = pid; @ocomm[$sk] = comm; {born} {not_srv} }}
  if ($new == {_LISTEN}) {{ @lpid[$ns, $sport] = pid; @lcomm[$ns, $sport] = comm; }}
  if ($new == {_SYN_RECV}) {{
    $lp = @lpid[$ns, $sport];
    if ($lp) {{ @opid[$sk] = $lp; @ocomm[$sk] = @lcomm[$ns, $sport]; }}
    else {{ delete(@opid[$sk]); delete(@ocomm[$sk]); }}
    {born} {srv}
  }}
  __STATE_BODY__
}}
tracepoint:tcp:tcp_destroy_sock {{
  $sk = (struct sock *)args->skaddr;
  if (@opid[$sk]) {{ @gpid[$sk] = @opid[$sk]; @gcomm[$sk] = @ocomm[$sk]; }}
  delete(@opid[$sk]); delete(@ocomm[$sk]);{"" if agg else " delete(@born[$sk]); delete(@srv[$sk]);"}
}}
"""


def _state_body(spec: ProgramSpec) -> str:
    """Per-event connect latency, failed connects and lifetimes; or their counts in aggregate mode."""
    want_conn, want_life = "connect" in spec.what, "lifetimes" in spec.what
    if not (want_conn or want_life):
        return ""
    test = _port_test(spec.ports, "$sport", "$dport")
    if spec.aggregate_every:
        lines = []
        if want_conn:
            lines.append(f"if ($old == {_SYN_SENT} && $new == {_ESTABLISHED}) {{ @connects[1] = count(); }}")
            lines.append(f"if ($old == {_SYN_SENT} && $new == {_CLOSE}) {{ @connects[0] = count(); }}")
        if want_life:
            lines.append(f"if ($new == {_ESTABLISHED}) {{ @established = count(); }}")
            lines.append(f"if ($new == {_CLOSE} && $old != {_SYN_SENT}) {{ @closed = count(); }}")
        return f"{_guard(test)}{{ {' '.join(lines)} }}"
    # state changes come before tcp_destroy_sock: the live owner is there (and bpftrace could not
    # type @gpid yet: it is first written in the destroy probe, below this one)
    parts = [_sk_attr(gone=False), _ADDRS_TP, "  $age = @born[$sk] ? (nsecs - @born[$sk]) / 1000 : -1;\n"]
    if want_conn:
        parts.append(
            f"  if ($old == {_SYN_SENT} && ($new == {_ESTABLISHED} || $new == {_CLOSE})) {{ "
            + _record("CN", "$sport", "$dport", "$new", "0", "$age")
            + " }\n"
        )
    if want_life:
        parts.append(
            f"  if ($new == {_CLOSE} && $old != {_SYN_SENT} && @born[$sk]) {{ "
            + _record("LT", "$sport", "$dport", "$old", "@srv[$sk]", "$age")
            + " }\n"
        )
    return f"{_guard(test)}{{\n{''.join(parts)}  }}"


def _resets(fmts: KernelFormats, spec: ProgramSpec, prog: Program) -> str:
    out = []
    send = fmts.get("tcp", "tcp_send_reset")
    agg = spec.aggregate_every is not None
    if send is None:
        prog.notes.append(
            "tcp:tcp_send_reset is missing on this kernel: resets sent are counted from Tcp OutRsts only"
        )
    else:
        prog.formats["tcp_send_reset"] = send
        reason = "args->reason" if send.has("reason") else "-1"
        if not send.has("reason"):
            prog.notes.append("this kernel's tcp:tcp_send_reset has no reset reason (added in Linux 6.10)")
        state = "args->state" if send.has("state") else "$sk->__sk_common.skc_state"
        sockaddr = send.fields.get("saddr") is not None and send.fields["saddr"].array == 28
        if sockaddr:
            addrs = """  $sa = (struct sockaddr_in *)args->saddr; $da = (struct sockaddr_in *)args->daddr;
  if ($sa->sin_family == 2) { $s = ntop($sa->sin_addr.s_addr); $d = ntop($da->sin_addr.s_addr); }
  else { $s = ntop(((struct sockaddr_in6 *)args->saddr)->sin6_addr.in6_u.u6_addr8);
         $d = ntop(((struct sockaddr_in6 *)args->daddr)->sin6_addr.in6_u.u6_addr8); }
"""
            sport, dport = "$sa->sin_port", "$da->sin_port"
            test = _port_test(spec.ports, sport, dport, network_order=True)
        else:
            addrs = _PORTS_TP + _ADDRS_TP
            sport, dport = "$sport", "$dport"
            test = _port_test(spec.ports, sport, dport)
        # NO_SOCKET resets have no socket: the namespace is the one of the packet that provoked it.
        # The socket may be an inet_timewait_sock (TCP_TIMEWAIT_SOCKET): see _sk_attr.
        attr = "  $sk = (struct sock *)args->skaddr;\n" + _sk_attr(
            fallback_ns="((struct sk_buff *)args->skbaddr)->dev->nd_net.net->ns.inum"
        )
        # the segment answered (NULL for a reset of our own: close, linger 0, keepalive): a SYN
        # without ACK means a refused connect, anything else a segment for a connection gone
        if send.has("skbaddr"):
            attr += """  $syn = (uint64)0;
  if ((uint64)args->skbaddr != 0) {
    $rskb = (struct sk_buff *)args->skbaddr;
    $rth = (struct tcphdr *)($rskb->head + $rskb->transport_header);
    if ($rth->syn && !$rth->ack) { $syn = (uint64)1; }
  }
"""
            answered = "(((uint64)$sk != 0) + 2 * $syn)"
        else:
            answered = "((uint64)$sk != 0)"
        if agg:
            body = f"  @resets_sent[{reason}, {state}] = count();\n"
            if sockaddr:
                test = _port_test(spec.ports, "((struct sockaddr_in *)args->saddr)->sin_port",
                                  "((struct sockaddr_in *)args->daddr)->sin_port", network_order=True)  # fmt: skip
                ports_needed = ""
            else:  # the older layout's filter reads $sport/$dport: assign them as the other probes do
                ports_needed = _PORTS_TP if spec.ports else ""
            out.append(f"{send.probe} {{\n{ports_needed}  {_guard(test)}{{\n{body}  }}\n}}\n")
        else:
            host_ports = (f"bswap({sport})", f"bswap({dport})") if sockaddr else (sport, dport)
            rec = _record("RS", *host_ports, state, reason, answered)
            out.append(f"{send.probe} {{\n{addrs}{attr}  {_guard(test)}{{ {rec} }}\n}}\n")
    recv = fmts.get("tcp", "tcp_receive_reset")
    if recv is None:
        prog.notes.append("tcp:tcp_receive_reset is missing on this kernel: resets received are not traced")
    else:
        prog.formats["tcp_receive_reset"] = recv
        test = _port_test(spec.ports, "$sport", "$dport")
        if agg:
            body = "  $sk = (struct sock *)args->skaddr; @resets_received[$sk->__sk_common.skc_state] = count();\n"
            out.append(f"{recv.probe} {{\n{_PORTS_TP}  {_guard(test)}{{\n{body}  }}\n}}\n")
        else:
            rec = _record("RR", "$sport", "$dport", "$sk->__sk_common.skc_state", "0", "0")
            out.append(
                f"{recv.probe} {{\n{_PORTS_TP}  $sk = (struct sock *)args->skaddr;\n{_SK_ATTR}{_ADDRS_TP}  {_guard(test)}{{ {rec} }}\n}}\n"
            )
    return "".join(out)


def _retrans(fmts: KernelFormats, spec: ProgramSpec, prog: Program) -> str:
    tp = fmts.get("tcp", "tcp_retransmit_skb")
    if tp is None:
        prog.notes.append("tcp:tcp_retransmit_skb is missing: retransmissions come from Tcp RetransSegs only")
        return ""
    prog.formats["tcp_retransmit_skb"] = tp
    test = _port_test(spec.ports, "$sport", "$dport")
    state = "args->state" if tp.has("state") else "$sk->__sk_common.skc_state"
    if spec.aggregate_every:
        body = f"  $sk = (struct sock *)args->skaddr; @retransmits[{state}] = count();\n"
        return f"{tp.probe} {{\n{_PORTS_TP}  {_guard(test)}{{\n{body}  }}\n}}\n"
    err = "args->err" if tp.has("err") else "0"
    rec = _record("RT", "$sport", "$dport", state, err, "0")
    return f"{tp.probe} {{\n{_PORTS_TP}  $sk = (struct sock *)args->skaddr;\n{_SK_ATTR}{_ADDRS_TP}  {_guard(test)}{{ {rec} }}\n}}\n"


def _drops(fmts: KernelFormats, spec: ProgramSpec, prog: Program) -> str:
    tp = fmts.get("skb", "kfree_skb")
    if tp is None:
        prog.notes.append("skb:kfree_skb is missing on this kernel: drops are not traced")
        return ""
    prog.formats["kfree_skb"] = tp
    reason = "args->reason" if tp.has("reason") else "-1"
    if not tp.has("reason"):
        prog.notes.append("this kernel's skb:kfree_skb has no drop reason (added in Linux 5.17)")
    test = _port_test(spec.ports, "$th->source", "$th->dest", network_order=True)
    if spec.aggregate_every:
        action = f"@drops[{reason}] = count();"
    else:
        action = _record(
            "DR", "bswap($th->source)", "bswap($th->dest)", "($th->syn + 2 * $th->rst)", reason, "$l"
        )
    rx = "args->rx_sk" if tp.has("rx_sk") else "0"
    # the receiving socket, else the sending one (skb->sk on output); its namespace, else the device's
    attribution = (
        ""
        if spec.aggregate_every
        else f"""    $sk = (struct sock *){rx};
    if ((uint64)$sk == 0) {{ $sk = $skb->sk; }}
"""
        + _sk_attr(indent="    ", fallback_ns="((uint64)$skb->dev != 0 ? $skb->dev->nd_net.net->ns.inum : 0)")
    )
    # Only TCP segments: parse the IP header the skb points at (v4 and v6), then the TCP header.
    return f"""{tp.probe} /args->protocol == 0x0800 || args->protocol == 0x86DD/ {{
  $skb = (struct sk_buff *)args->skbaddr;
  $ip = (struct iphdr *)($skb->head + $skb->network_header);
  $tcp = 0; $l = 0;
  if ($ip->version == 4 && $ip->protocol == 6) {{
    $th = (struct tcphdr *)($skb->head + $skb->network_header + $ip->ihl * 4);
    $s = ntop($ip->saddr); $d = ntop($ip->daddr); $tcp = 1; $l = bswap($ip->tot_len);
  }}
  if ($ip->version == 6 && ((struct ipv6hdr *)$ip)->nexthdr == 6) {{
    $th = (struct tcphdr *)($skb->head + $skb->network_header + 40);
    $s = ntop(((struct ipv6hdr *)$ip)->saddr.in6_u.u6_addr8); $d = ntop(((struct ipv6hdr *)$ip)->daddr.in6_u.u6_addr8);
    $tcp = 1; $l = bswap(((struct ipv6hdr *)$ip)->payload_len);
  }}
  if ($tcp) {{
{attribution}    {_guard(test)}{{ {action} }}
  }}
}}
"""


def _needs_ownership(spec: ProgramSpec) -> bool:
    return any(w in spec.what for w in ("resets", "drops", "retrans", "lifetimes", "connect"))


def build_program(spec: ProgramSpec, fmts: KernelFormats) -> Program:
    """The bpftrace program for ``spec`` on the running kernel (with notes on every fallback)."""
    prog = Program(text="")
    parts: list[str] = []
    agg = spec.aggregate_every is not None
    if _needs_ownership(spec):
        state_tp = fmts.get("sock", "inet_sock_set_state")
        if state_tp is None or fmts.get("tcp", "tcp_destroy_sock") is None:
            prog.notes.append(
                "sock:inet_sock_set_state or tcp:tcp_destroy_sock is missing: sockets are attributed "
                "by cgroup only, and lifetimes/connect latency are not traced"
            )
        elif agg:
            # counts need no owners: no bookkeeping maps, no destroy probe (the cheap path)
            prog.formats["inet_sock_set_state"] = state_tp
            body = _state_body(spec)
            if body:
                parts.append(
                    "tracepoint:sock:inet_sock_set_state /args->protocol == 6/ {\n"
                    "  $sport = args->sport; $dport = args->dport; $old = args->oldstate; $new = args->newstate;\n"
                    f"  {body}\n}}\n"
                )
        else:
            prog.formats["inet_sock_set_state"] = state_tp
            parts.append(_ownership(state_tp, agg).replace("__STATE_BODY__", _state_body(spec)))
    if "resets" in spec.what:
        parts.append(_resets(fmts, spec, prog))
    if "retrans" in spec.what:
        parts.append(_retrans(fmts, spec, prog))
    if "drops" in spec.what:
        parts.append(_drops(fmts, spec, prog))
    if agg:
        body = "".join(parts)
        maps = [m for m in aggregate_maps(spec) if f"{m}[" in body or f"{m} =" in body]
        if maps:
            prints = " ".join(f"print({m});" for m in maps)
            parts.append(f"interval:s:{int(spec.aggregate_every or 1)} {{ {prints} }}\n")
    if fmts.get("syscalls", "sys_enter_getppid") is not None and parts:
        # Attached last: bpftrace prints "attached_probes" before attaching, so the runner calls
        # getppid() until this fires, which proves the probes above are live (see runner.Bpftrace).
        parts.append(
            f"tracepoint:syscalls:sys_enter_getppid /pid == {int(os.getpid())}/ "
            '{ if (@ready == 0) { printf("READY\\n"); @ready = 1; } }\n'
        )
    text = "".join(parts)
    scratch = [
        m
        for m in ("@opid", "@ocomm", "@gpid", "@gcomm", "@lpid", "@lcomm", "@born", "@srv", "@ready")
        if f"{m}[" in text or f"{m} =" in text
    ]
    if scratch:  # bookkeeping maps are not results: do not let bpftrace print them at exit
        parts.append("END { " + " ".join(f"clear({m});" for m in scratch) + " }\n")
    prog.text = "".join(parts)
    prog.probes = [line.split()[0] for line in prog.text.splitlines() if line.startswith("tracepoint:")]
    return prog


def aggregate_maps(spec: ProgramSpec) -> list[str]:
    """The kernel maps an aggregate program keeps for ``spec`` (printed every interval)."""
    maps: list[str] = []
    if "resets" in spec.what:
        maps += ["@resets_sent", "@resets_received"]
    if "retrans" in spec.what:
        maps.append("@retransmits")
    if "drops" in spec.what:
        maps.append("@drops")
    if "connect" in spec.what:
        maps.append("@connects")
    if "lifetimes" in spec.what:
        maps += ["@established", "@closed"]
    return maps
