"""cgroup path → container → pod, for the kubelet's systemd and cgroupfs layouts."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tcpdoctor.sources.ebpf.attribution import Attributor, cgroup2_root, parse_cgroup_path, pod_names

UID = "1f4c2a7e-9b3d-4e51-8a6f-0c2d9e7b5a31"
CID = "4b8e3f2a1c0d9e8f7a6b5c4d3e2f1a0b9c8d7e6f5a4b3c2d1e0f9a8b7c6d5e4f"


@pytest.mark.parametrize(
    ("path", "runtime"),
    [
        # systemd driver, containerd, Burstable
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
            "containerd",
        ),
        # systemd driver, containerd, Guaranteed (no QoS slice)
        (
            f"/kubepods.slice/kubepods-pod{UID.replace('-', '_')}.slice/cri-containerd-{CID}.scope",
            "containerd",
        ),
        # systemd driver, CRI-O, BestEffort
        (
            f"/kubepods.slice/kubepods-besteffort.slice/kubepods-besteffort-pod{UID.replace('-', '_')}.slice/crio-{CID}.scope",
            "cri-o",
        ),
        # systemd driver, docker (dockershim / cri-dockerd)
        (
            f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice/docker-{CID}.scope",
            "docker",
        ),
        # cgroupfs driver, containerd: bare id
        (f"/kubepods/burstable/pod{UID}/{CID}", None),
        # cgroupfs driver, Guaranteed
        (f"/kubepods/pod{UID}/{CID}", None),
        # cgroupfs driver, CRI-O
        (f"/kubepods/besteffort/pod{UID}/crio-{CID}", "cri-o"),
    ],
)
def test_layouts(path: str, runtime: str | None) -> None:
    info = parse_cgroup_path(path)
    assert info.pod_uid == UID
    assert info.container_id == CID
    assert info.runtime == runtime


def test_pod_level_cgroup_has_no_container() -> None:
    info = parse_cgroup_path(
        f"/kubepods.slice/kubepods-burstable.slice/kubepods-burstable-pod{UID.replace('-', '_')}.slice"
    )
    assert info.pod_uid == UID and info.container_id is None


@pytest.mark.parametrize(
    "path",
    [
        "/",
        "/user.slice/user-1000.slice/session-2.scope",
        "/system.slice/containerd.service",
        f"/docker/{CID}",
    ],
)
def test_not_a_pod(path: str) -> None:
    assert parse_cgroup_path(path).pod_uid is None


def test_pod_names_from_log_dirs(tmp_path: Path) -> None:
    (tmp_path / f"shop_api-7d9f8c6b5-x2k4q_{UID}").mkdir()
    (tmp_path / "not-a-pod-dir").mkdir()
    (tmp_path / "kube-system_coredns_nope").mkdir()
    assert pod_names(tmp_path) == {UID: ("shop", "api-7d9f8c6b5-x2k4q")}
    assert pod_names(tmp_path / "missing") == {}


def test_attributor_resolves_inode_to_pod(tmp_path: Path) -> None:
    """A fake cgroup tree: the cgroup id is the directory's inode, as kernfs makes it."""
    root = tmp_path / "cg"
    leaf = root / "kubepods.slice" / "kubepods-burstable.slice"
    leaf = leaf / f"kubepods-burstable-pod{UID.replace('-', '_')}.slice" / f"cri-containerd-{CID}.scope"
    leaf.mkdir(parents=True)
    logs = tmp_path / "pods"
    (logs / f"shop_api-0_{UID}").mkdir(parents=True)
    att = Attributor(root=root, log_dir=logs).attribute(os.stat(leaf).st_ino, 4242, "api")
    assert (att.pod_namespace, att.pod_name, att.pod_uid) == ("shop", "api-0", UID)
    assert att.container_id == CID and att.runtime == "containerd"
    assert att.label() == "pod shop/api-0 (pid 4242 api)"
    unknown = Attributor(root=root, log_dir=logs).attribute(123456789, None, None)
    assert unknown.pod_uid is None and unknown.label() == "unknown process"


def test_cgroup2_root_from_mountinfo(tmp_path: Path) -> None:
    mi = tmp_path / "mountinfo"
    mi.write_text(
        "30 25 0:26 / /sys/fs/cgroup rw,nosuid shared:4 - tmpfs tmpfs ro,mode=755\n"
        "35 30 0:31 / /sys/fs/cgroup/unified rw,nosuid shared:10 - cgroup2 cgroup2 rw,nsdelegate\n"
    )
    assert cgroup2_root(mi) == Path("/sys/fs/cgroup/unified")
    mi.write_text("30 25 0:26 / /proc rw - proc proc rw\n")
    assert cgroup2_root(mi) is None
