"""tcpdump inside a lab namespace: started before the traffic, stopped cleanly after it."""

from __future__ import annotations

import select
import signal
import subprocess
import time
from pathlib import Path

from tcpdoctor.lab.netns import Netns


class Capture:
    def __init__(self, ns: Netns, iface: str, path: Path, bpf_filter: str = "tcp or icmp") -> None:
        self.path = path
        self.proc = subprocess.Popen(
            ns.cmd(
                [
                    "tcpdump",
                    "-i",
                    iface,
                    "--immediate-mode",
                    "-U",
                    "-n",
                    "-s",
                    "0",
                    "-w",
                    str(path),
                    bpf_filter,
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            start_new_session=True,
        )
        self._wait_listening()

    def _wait_listening(self, timeout: float = 10.0) -> None:
        """tcpdump prints "listening on ..." once the socket is open: no packet is missed after that."""
        assert self.proc.stderr is not None
        deadline = time.monotonic() + timeout
        buf = b""
        while b"listening on" not in buf:
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                raise RuntimeError(f"tcpdump did not start: {buf.decode(errors='replace').strip()}")
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                buf += self.proc.stderr.read1(4096)  # type: ignore[attr-defined]

    def stop(self) -> Path:
        if self.proc.poll() is None:
            time.sleep(0.2)  # let the last packets of the scenario reach the file
            self.proc.send_signal(signal.SIGINT)
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.path
