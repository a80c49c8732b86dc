"""Who a socket belongs to: cgroup id → cgroup path → container id → pod UID → pod name.

The kernel gives the socket's cgroup id (``sk->sk_cgrp_data.cgroup->kn->id``), which is the
inode number of the cgroup's directory in the cgroup v2 hierarchy. The path then names the
container and the pod, in the layouts the kubelet creates
(pkg/kubelet/cm/cgroup_manager_linux.go, pkg/kubelet/cm/qos_container_manager_linux.go):

- systemd driver: ``/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod<uid with _>.slice/``
  then ``cri-containerd-<id>.scope`` (containerd), ``crio-<id>.scope`` (CRI-O) or ``docker-<id>.scope``;
  Guaranteed pods sit directly under ``kubepods.slice/kubepods-pod<uid>.slice``.
- cgroupfs driver: ``/kubepods/burstable/pod<uid>/<id>`` (containerd, docker) or ``.../crio-<id>``.

Pod names come from the kubelet's log directories ``/var/log/pods/<namespace>_<name>_<uid>``.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

from tcpdoctor.evidence.trace import Attribution

_UID = r"[0-9a-fA-F]{8}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{4}[-_][0-9a-fA-F]{12}"
_POD = re.compile(rf"(?:^|[/-])pod(?P<uid>{_UID})(?:\.slice)?(?:/|$)")
_CONTAINER = re.compile(
    r"/(?:(?P<rt>cri-containerd|crio|docker|containerd)-)?(?P<id>[0-9a-f]{64})(?:\.scope)?$"
)
_RUNTIMES = {"cri-containerd": "containerd", "containerd": "containerd", "crio": "cri-o", "docker": "docker"}


@dataclass(frozen=True)
class CgroupInfo:
    pod_uid: str | None
    container_id: str | None
    runtime: str | None


def parse_cgroup_path(path: str) -> CgroupInfo:
    """The pod UID and container id a kubelet cgroup path names (None when it is not a pod's)."""
    pod = _POD.search(path)
    uid = pod["uid"].replace("_", "-").lower() if pod else None
    container = _CONTAINER.search(path) if pod else None
    runtime: str | None = None
    cid: str | None = None
    if container:
        cid = container["id"]
        rt = container["rt"]
        if rt:
            runtime = _RUNTIMES[rt]
        elif "/kubepods" in path:
            runtime = None  # cgroupfs layout: containerd and docker write the bare id
    return CgroupInfo(pod_uid=uid, container_id=cid, runtime=runtime)


def cgroup2_root(mountinfo: Path = Path("/proc/self/mountinfo")) -> Path | None:
    """Where the cgroup v2 hierarchy is mounted (/sys/fs/cgroup, or /sys/fs/cgroup/unified on hybrid)."""
    try:
        lines = mountinfo.read_text().splitlines()
    except OSError:
        return None
    for line in lines:
        pre, _, post = line.partition(" - ")
        if post.split(" ", 1)[0] == "cgroup2":
            return Path(pre.split()[4])
    return None


def pod_names(log_dir: Path = Path("/var/log/pods")) -> dict[str, tuple[str, str]]:
    """pod UID → (namespace, name) from the kubelet's /var/log/pods/<ns>_<name>_<uid> directories."""
    names: dict[str, tuple[str, str]] = {}
    try:
        entries = list(os.scandir(log_dir))
    except OSError:
        return names
    for entry in entries:
        parts = entry.name.split("_")
        if len(parts) == 3 and re.fullmatch(_UID, parts[2]):
            names[parts[2].lower()] = (parts[0], parts[1])
    return names


def pid_cgroup(pid: int, proc: Path = Path("/proc")) -> str | None:
    """The cgroup v2 path of a process (the ``0::`` line of /proc/<pid>/cgroup)."""
    try:
        for line in (proc / str(pid) / "cgroup").read_text().splitlines():
            if line.startswith("0::"):
                return line[3:]
    except OSError:
        return None
    return None


class Attributor:
    """Resolves cgroup ids to paths and pods, lazily and cached (one walk of the hierarchy per miss)."""

    def __init__(self, root: Path | None = None, log_dir: Path = Path("/var/log/pods")) -> None:
        self.root = root if root is not None else cgroup2_root()
        self.log_dir = log_dir
        self._paths: dict[int, str] = {}
        self._walked_for: set[int] = set()
        self._pods: dict[str, tuple[str, str]] | None = None

    def _walk(self) -> None:
        if self.root is None:
            return
        self._paths[os.stat(self.root).st_ino] = "/"
        for dirpath, dirnames, _ in os.walk(self.root):
            for d in dirnames:
                full = os.path.join(dirpath, d)
                try:
                    ino = os.stat(full).st_ino
                except OSError:
                    continue
                self._paths[ino] = "/" + os.path.relpath(full, self.root)

    def cgroup_path(self, cgroup_id: int) -> str | None:
        if not cgroup_id:
            return None
        if cgroup_id not in self._paths and cgroup_id not in self._walked_for:
            self._walked_for.add(cgroup_id)
            self._walk()
        return self._paths.get(cgroup_id)

    def pod_name(self, uid: str) -> tuple[str, str] | None:
        if self._pods is None or uid not in self._pods:
            self._pods = pod_names(self.log_dir)
        return self._pods.get(uid)

    def attribute(self, cgroup_id: int, pid: int | None, comm: str | None) -> Attribution:
        att = Attribution(pid=pid or None, comm=comm or None, cgroup_id=cgroup_id)
        path = self.cgroup_path(cgroup_id)
        if path is None and pid:
            path = pid_cgroup(pid)
        att.cgroup_path = path
        if path:
            info = parse_cgroup_path(path)
            att.pod_uid, att.container_id, att.runtime = info.pod_uid, info.container_id, info.runtime
            if info.pod_uid:
                named = self.pod_name(info.pod_uid)
                if named:
                    att.pod_namespace, att.pod_name = named
        return att
