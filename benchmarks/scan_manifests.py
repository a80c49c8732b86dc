"""Benchmark: documents/s of `tcpdoctor scan --format json` on 10,000 workload documents.

PRODUCT.md target (issue #2 item 10): at least 2,000 documents/s, and scan time within 2x
of the time the same YAML library (PyYAML's libyaml loader, which the manifest source
uses) needs just to load the same files: the floor.

What is timed, alternating runs (scan, load, scan, load, ...) so that machine noise hits both:

* ``scan``: the CLI as a user runs it, ``tcpdoctor scan --format json --fail-on never DIR``
  in a subprocess (interpreter start-up and imports included; the start-up alone is
  measured too, as ``tcpdoctor --version``, and reported);
* ``load``: ``yaml.load_all(text, Loader=yaml.CSafeLoader)`` over every file, in a fresh
  subprocess too, with the interpreter start-up subtracted the same way (time inside the
  process, around the loop only).

    .venv/bin/python benchmarks/scan_manifests.py [--docs 10000] [--runs 5] [--keep DIR] [--profile]

``--profile`` runs the scan once in-process under pyinstrument and prints where time goes.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

TOOL = [sys.executable, "-m", "tcpdoctor.cli"]
DOCS_PER_FILE = (20, 400)  # files of a few documents to large multi-doc dumps
TARGET_DOCS_PER_SECOND = 2000
TARGET_RATIO = 2.0

# --- the corpus ---------------------------------------------------------------------------------------------


def _probe(rng: random.Random, port: int, name: str | None) -> dict[str, object]:
    handler = rng.choice(["httpGet", "httpGet", "tcpSocket", "grpc", "exec"])
    probe: dict[str, object]
    ref: int | str = name if name and rng.random() < 0.6 else port
    if handler == "httpGet":
        path = rng.choice(["/healthz", "/readyz", "/livez", "/events", "/health/full", "/", "/metrics"])
        probe = {"httpGet": {"path": path, "port": ref}}
        if rng.random() < 0.1:
            probe["httpGet"] = {"path": path, "port": ref, "scheme": "HTTPS"}
    elif handler == "tcpSocket":
        probe = {"tcpSocket": {"port": ref}}
    elif handler == "grpc":
        probe = {"grpc": {"port": port}}
    else:
        probe = {
            "exec": {
                "command": rng.choice(
                    [
                        ["sh", "-c", f"echo > /dev/tcp/127.0.0.1/{port}"],
                        ["/bin/grpc_health_probe", f"-addr=:{port}"],
                        ["cat", "/tmp/healthy"],
                    ]
                )
            }
        }
    for key, choices in (
        ("initialDelaySeconds", [0, 5, 10, 30, 90]),
        ("periodSeconds", [2, 5, 10, 15, 30]),
        ("timeoutSeconds", [1, 1, 2, 3, 5]),
        ("failureThreshold", [1, 3, 3, 5, 10]),
    ):
        if rng.random() < 0.5:
            probe[key] = rng.choice(choices)
    return probe


def _container(rng: random.Random, i: int) -> dict[str, object]:
    port = rng.choice([8080, 8443, 9090, 3000, 50051])
    name = rng.choice(["http", "https", "grpc", "web", None])
    c: dict[str, object] = {
        "name": f"app{i}",
        "image": rng.choice(
            ["ghcr.io/acme/api:1.2.3", "gcr.io/distroless/static:nonroot", "nginx:1.27", "busybox:1.36"]
        ),
        "ports": [{"containerPort": port, **({"name": name} if name else {}), "protocol": "TCP"}],
        "env": [{"name": "LOG_LEVEL", "value": "info"}, {"name": "GOMAXPROCS", "value": "2"}],
        "resources": {
            "requests": {"cpu": "100m", "memory": "64Mi"},
            "limits": {"cpu": rng.choice(["200m", "250m", "500m", "1", "2"]), "memory": "256Mi"},
        },
    }
    for kind in ("livenessProbe", "readinessProbe", "startupProbe"):
        if rng.random() < (0.8 if kind != "startupProbe" else 0.2):
            c[kind] = _probe(rng, port, name)
    if rng.random() < 0.4:
        c["lifecycle"] = rng.choice(
            [{"preStop": {"sleep": {"seconds": 10}}}, {"preStop": {"exec": {"command": ["sleep", "5"]}}}]
        )
    return c


def _pod_spec(rng: random.Random) -> dict[str, object]:
    spec: dict[str, object] = {"containers": [_container(rng, i) for i in range(rng.choice([1, 1, 1, 2, 3]))]}
    if rng.random() < 0.5:
        spec["terminationGracePeriodSeconds"] = rng.choice([5, 10, 30, 60])
    if rng.random() < 0.15:
        spec["initContainers"] = [{"name": "migrate", "image": "ghcr.io/acme/migrate:1", "args": ["up"]}]
    return spec


def _workload(rng: random.Random, n: int) -> dict[str, object]:
    kind = rng.choice(["Deployment"] * 5 + ["StatefulSet", "DaemonSet", "CronJob", "Job", "Pod"])
    name = f"svc-{n}"
    labels = {"app.kubernetes.io/name": name, "tier": rng.choice(["web", "api", "worker"])}
    meta: dict[str, object] = {"name": name, "namespace": rng.choice(["default", "shop", "payments"])}
    if rng.random() < 0.1:
        meta["annotations"] = {"tcpdoctor.io/ignore": "PRB001", "tcpdoctor.io/startup-seconds": "120"}
    # copies, never one shared dict: PyYAML would dump a shared one as an &anchor / *alias pair
    template = {"metadata": {"labels": dict(labels)}, "spec": _pod_spec(rng)}
    if kind == "Pod":
        return {
            "apiVersion": "v1",
            "kind": "Pod",
            "metadata": {**meta, "labels": dict(labels)},
            "spec": template["spec"],
        }
    if kind == "CronJob":
        return {
            "apiVersion": "batch/v1",
            "kind": "CronJob",
            "metadata": meta,
            "spec": {"schedule": "*/5 * * * *", "jobTemplate": {"spec": {"template": template}}},
        }
    spec: dict[str, object] = {"template": template}
    if kind != "Job":
        spec["selector"] = {"matchLabels": dict(labels)}
    if kind in ("Deployment", "StatefulSet"):
        spec["replicas"] = rng.choice([1, 2, 3, 6])
    api = "batch/v1" if kind == "Job" else "apps/v1"
    return {"apiVersion": api, "kind": kind, "metadata": meta, "spec": spec}


def _service(rng: random.Random, workload: dict[str, object]) -> dict[str, object]:
    meta = workload["metadata"]
    assert isinstance(meta, dict)
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": meta["name"], "namespace": meta["namespace"]},
        "spec": {
            "selector": {"app.kubernetes.io/name": meta["name"]},
            "ports": [{"name": "http", "port": 80, "targetPort": rng.choice(["http", 8080, "web"])}],
        },
    }


def documents(rng: random.Random, count: int) -> list[dict[str, object]]:
    """``count`` documents: mostly workloads, with their Services and some ConfigMaps."""
    docs: list[dict[str, object]] = []
    n = 0
    while len(docs) < count:
        w = _workload(rng, n)
        docs.append(w)
        if len(docs) < count and rng.random() < 0.4:
            docs.append(_service(rng, w))
        if len(docs) < count and rng.random() < 0.05:
            docs.append(
                {
                    "apiVersion": "v1",
                    "kind": "ConfigMap",
                    "metadata": {"name": f"cfg-{n}"},
                    "data": {"k": "v"},
                }
            )
        n += 1
    return docs


def write_corpus(folder: Path, count: int, seed: int = 2) -> list[Path]:
    """Multi-document YAML files, some ``kind: List`` dumps (as kubectl prints), one JSON file."""
    rng = random.Random(seed)
    docs = documents(rng, count)
    files: list[Path] = []
    i = 0
    while docs:
        size = rng.randint(*DOCS_PER_FILE)
        chunk, docs = docs[:size], docs[size:]
        sub = folder / f"team{len(files) % 7}"
        sub.mkdir(parents=True, exist_ok=True)
        style = rng.random()
        if style < 0.1:
            path = sub / f"dump{i}.json"
            path.write_text(json.dumps({"apiVersion": "v1", "kind": "List", "items": chunk}, indent=2))
        elif style < 0.3:
            path = sub / f"dump{i}.yaml"
            path.write_text(
                yaml.safe_dump({"apiVersion": "v1", "kind": "List", "items": chunk}, sort_keys=False)
            )
        else:
            path = sub / f"manifests{i}.yaml"
            path.write_text(yaml.safe_dump_all(chunk, sort_keys=False, explicit_start=True))
        files.append(path)
        i += 1
    return files


def count_documents(files: list[Path]) -> int:
    """Kubernetes objects in the corpus (the items of a List count one by one)."""
    total = 0
    for path in files:
        for doc in yaml.load_all(path.read_text(), Loader=yaml.CSafeLoader):
            total += len(doc["items"]) if doc.get("kind") == "List" else 1
    return total


# --- the measurements -----------------------------------------------------------------------------------

LOAD_SNIPPET = """
import sys, time, yaml
from pathlib import Path
files = [Path(p) for p in sys.argv[1:]]
t0, c0 = time.perf_counter(), time.process_time()
for p in files:
    for _ in yaml.load_all(p.read_text(encoding="utf-8"), Loader=yaml.CSafeLoader):
        pass
print(time.perf_counter() - t0, time.process_time() - c0)
"""


def _child_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def time_scan(folder: Path) -> tuple[float, float, int]:
    """(wall seconds, CPU seconds of the child, findings)."""
    c0 = _child_cpu()
    t0 = time.perf_counter()
    proc = subprocess.run(
        [*TOOL, "scan", "--format", "json", "--fail-on", "never", str(folder)],
        capture_output=True,
        text=True,
        check=False,
    )
    elapsed = time.perf_counter() - t0
    cpu = _child_cpu() - c0
    if proc.returncode != 0:
        sys.exit(f"scan failed ({proc.returncode}): {proc.stderr.strip()[-2000:]}")
    findings = len(json.loads(proc.stdout)["findings"])
    return elapsed, cpu, findings


def time_load(files: list[Path]) -> tuple[float, float]:
    """(wall seconds, CPU seconds) of the bare load, inside the process, start-up excluded."""
    proc = subprocess.run(
        [sys.executable, "-c", LOAD_SNIPPET, *map(str, files)], capture_output=True, text=True, check=True
    )
    wall, cpu = proc.stdout.split()
    return float(wall), float(cpu)


def time_startup() -> tuple[float, float]:
    c0 = _child_cpu()
    t0 = time.perf_counter()
    subprocess.run([*TOOL, "--version"], capture_output=True, check=True)
    return time.perf_counter() - t0, _child_cpu() - c0


def profile(folder: Path) -> None:
    from pyinstrument import Profiler
    from typer.testing import CliRunner

    from tcpdoctor.cli import app

    profiler = Profiler(interval=0.001)
    profiler.start()
    result = CliRunner().invoke(app, ["scan", "--format", "json", "--fail-on", "never", str(folder)])
    profiler.stop()
    if result.exit_code != 0:
        sys.exit(f"scan failed: {result.output[-2000:]}")
    print(profiler.output_text(unicode=True, color=False, show_all=False))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--docs", type=int, default=10_000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", type=Path, help="write the corpus here and keep it")
    ap.add_argument("--profile", action="store_true", help="profile one in-process scan with pyinstrument")
    args = ap.parse_args()

    folder = args.keep or Path(tempfile.mkdtemp(prefix="tcpdoctor-bench-"))
    try:
        files = write_corpus(folder, args.docs)
        ndocs = count_documents(files)
        size = sum(p.stat().st_size for p in files)
        print(f"corpus: {ndocs} documents in {len(files)} files ({size / 1e6:.1f} MB) under {folder}")
        if args.profile:
            profile(folder)
            return
        scans: list[tuple[float, float]] = []
        loads: list[tuple[float, float]] = []
        startups: list[tuple[float, float]] = []
        findings = 0
        time_scan(folder)  # warm the page cache and the .pyc files
        for _ in range(args.runs):
            wall, cpu, findings = time_scan(folder)
            scans.append((wall, cpu))
            loads.append(time_load(files))
            startups.append(time_startup())
        print(
            f"machine: {os.cpu_count()} CPUs, load average {os.getloadavg()[0]:.1f}; {args.runs} runs, medians"
        )
        print(f"findings per scan: {findings}")
        print("                         wall s   docs/s   |  CPU s   docs/s")
        results = {}
        for label, runs in (
            ("scan (subprocess)", scans),
            ("  start-up alone", startups),
            ("load floor", loads),
        ):
            wall = statistics.median(r[0] for r in runs)
            cpu = statistics.median(r[1] for r in runs)
            results[label] = (wall, cpu)
            print(f"{label:<22} {wall:8.2f} {ndocs / wall:8,.0f}   | {cpu:6.2f} {ndocs / cpu:8,.0f}")
        (scan_wall, scan_cpu), (load_wall, load_cpu) = results["scan (subprocess)"], results["load floor"]
        start_wall, start_cpu = results["  start-up alone"]
        print(
            f"ratio scan/load: wall {scan_wall / load_wall:.2f}x, CPU {scan_cpu / load_cpu:.2f}x "
            f"(start-up excluded: wall {(scan_wall - start_wall) / load_wall:.2f}x, "
            f"CPU {(scan_cpu - start_cpu) / load_cpu:.2f}x)"
        )
        rate = ndocs / scan_wall
        print(
            f"target >= {TARGET_DOCS_PER_SECOND} documents/s (wall): {'met' if rate >= TARGET_DOCS_PER_SECOND else 'MISSED'}"
            f"; scan <= {TARGET_RATIO:g}x load (wall): {'met' if scan_wall <= TARGET_RATIO * load_wall else 'MISSED'}"
        )
    finally:
        if args.keep is None:
            shutil.rmtree(folder, ignore_errors=True)


if __name__ == "__main__":
    os.environ.setdefault("PYTHONHASHSEED", "0")
    main()
