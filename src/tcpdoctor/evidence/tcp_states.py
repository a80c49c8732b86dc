"""TCP states as the kernel numbers them (include/net/tcp_states.h).

Part of the kernel ABI: ss, /proc/net/tcp, sock_diag and tracepoints all use these numbers
(the tracepoint format files name them symbolically, so their values cannot be read there).
"""

TCP_STATES: dict[int, str] = {
    1: "ESTABLISHED",
    2: "SYN_SENT",
    3: "SYN_RECV",
    4: "FIN_WAIT1",
    5: "FIN_WAIT2",
    6: "TIME_WAIT",
    7: "CLOSE",
    8: "CLOSE_WAIT",
    9: "LAST_ACK",
    10: "LISTEN",
    11: "CLOSING",
    12: "NEW_SYN_RECV",
}
