"""The manifest source: formats, record extraction, positions, and bad input that never escapes."""

from __future__ import annotations

import codecs
import time
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpdoctor.model import InputError
from tcpdoctor.sources import files, manifests
from tcpdoctor.sources.manifests import ParseFailure, SkippedFile, parse_cpu

from .helpers import deployment, load

FIXTURES = Path(__file__).parent / "fixtures"


# -- formats -----------------------------------------------------------------------------


def test_kubectl_list_dump_with_status_and_managed_fields() -> None:
    mset = manifests.extract(manifests.read_file(FIXTURES / "kubectl-dump.yaml"))
    assert [w.ref for w in mset.workloads] == ["Deployment/web"]
    w = mset.workloads[0]
    assert w.namespace == "shop" and w.labels == {"app": "web"}
    c = w.containers[0]
    assert c.name == "web" and c.cpu_limit_millicores == 200
    live = c.probes["liveness"]
    assert live.port == "web" and live.resolved_port == 8080 and live.failure_threshold == 1
    # the finding lines: `- image:` item (the container's first key) and the livenessProbe key
    assert (c.location.line, c.location.column) == (46, 11)
    assert live.location.line == 48 and live.field_location("failureThreshold").line == 49
    assert [s.name for s in mset.services_for(w)] == ["web"]
    assert mset.served_ports(w, c)[0][1].target_port == "web"


def test_typed_list_items_without_kind() -> None:
    text = (
        "apiVersion: apps/v1\nkind: DeploymentList\nitems:\n"
        "- metadata: {name: a}\n  spec: {template: {spec: {containers: [{name: c, image: x}]}}}\n"
    )
    mset = load(text)
    assert [w.ref for w in mset.workloads] == ["Deployment/a"]
    assert mset.workloads[0].location.line == 4


def test_helm_output_cronjob_template_init_and_sidecar() -> None:
    mset = manifests.extract(manifests.read_file(FIXTURES / "helm-rendered.yaml"))
    assert [o.kind for o in mset.objects] == ["ServiceAccount"]
    (cron,) = mset.workloads
    assert cron.ref == "CronJob/release-worker-report" and cron.labels == {"app.kubernetes.io/name": "worker"}
    assert cron.containers[0].cpu_limit_millicores == 1500
    plain, sidecar = cron.init_containers
    assert plain.kind == "init" and plain.probes == {}
    assert sidecar.restart_policy == "Always" and sidecar.probes["readiness"].resolved_port == 15000


def test_json_with_tabs_and_defaulted_zero() -> None:
    mset = manifests.extract(manifests.read_file(FIXTURES / "pod-tabs.json"))
    (pod,) = mset.workloads
    assert pod.ref == "Pod/tabbed" and pod.namespace == "ops"
    probe = pod.containers[0].probes["readiness"]
    assert probe.period_seconds == 10  # 0 is defaulted by the API server
    assert probe.location.line == 6 and probe.location.column == 3


def test_non_kubernetes_yaml_is_ignored_quietly() -> None:
    mset = manifests.collect([FIXTURES / "not-kubernetes.yaml"])
    assert (mset.workloads, mset.services, mset.objects, mset.parse_errors) == ([], [], [], [])


def test_ephemeral_containers_get_no_probes() -> None:
    text = (
        "apiVersion: v1\nkind: Pod\nmetadata: {name: p}\nspec:\n  containers: [{name: c, image: x}]\n"
        "  ephemeralContainers:\n  - name: debug\n    image: busybox\n    readinessProbe: {exec: {command: [true]}}\n"
    )
    (pod,) = load(text).workloads
    assert pod.ephemeral_containers[0].kind == "ephemeral" and pod.ephemeral_containers[0].probes == {}


def test_roundtrip_gives_the_same_records_on_editable_nodes() -> None:
    path = FIXTURES / "kubectl-dump.yaml"
    fast = manifests.extract(manifests.read_file(path))
    rt = manifests.extract(manifests.read_file(path, roundtrip=True))
    from ruamel.yaml.comments import CommentedMap

    f_probe = fast.workloads[0].containers[0].probes["liveness"]
    r_probe = rt.workloads[0].containers[0].probes["liveness"]
    assert isinstance(r_probe.raw, CommentedMap) and isinstance(
        rt.workloads[0].containers[0].raw, CommentedMap
    )
    assert (f_probe.location, f_probe.field_locations, f_probe.resolved_port) == (
        r_probe.location,
        r_probe.field_locations,
        r_probe.resolved_port,
    )


@pytest.mark.parametrize(
    ("value", "millicores"),
    [
        ("250m", 250),
        ("0.5", 500),
        (1, 1000),
        ("1", 1000),
        (0.25, 250),
        ("1.5", 1500),
        ("2k", 2_000_000),
        ("x", None),
    ],
)
def test_parse_cpu(value: object, millicores: int | None) -> None:
    assert parse_cpu(value) == millicores


def test_named_ports_and_services_by_selector_and_namespace() -> None:
    text = deployment("readinessProbe: {httpGet: {path: /r, port: http}}\n", service=True)
    mset = load(text)
    w = mset.workloads[0]
    assert w.containers[0].probes["readiness"].resolved_port == 8080
    assert [s.name for s in mset.services_for(w)] == ["api"]
    other_ns = load(
        text.replace("  name: api\nspec:\n  selector", "  name: api\n  namespace: prod\nspec:\n  selector")
    )
    assert other_ns.services_for(other_ns.workloads[0]) == []


# -- the walker --------------------------------------------------------------------------


def test_walker_skips_vendor_hidden_and_classifies(tmp_path: Path) -> None:
    for rel in (
        "a.yaml",
        "b.yml",
        "c.json",
        "main.go",
        "main_test.go",
        "README.md",
        "vendor/x.yaml",
        ".git/config.yaml",
        "node_modules/y.yaml",
        ".hidden/z.yaml",
        "sub/d.yaml",
    ):
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text("a: 1\n")
    found = files.walk([tmp_path])
    assert [p.relative_to(tmp_path).as_posix() for p in found.manifests] == [
        "a.yaml",
        "b.yml",
        "c.json",
        "sub/d.yaml",
    ]
    assert [p.name for p in found.go] == ["main.go"]
    assert [p.name for p in files.walk([tmp_path], include_go_tests=True).go] == ["main.go", "main_test.go"]
    # a file named explicitly is taken whatever its suffix
    assert files.walk([tmp_path / "README.md"]).manifests == [tmp_path / "README.md"]
    with pytest.raises(InputError):
        files.walk([tmp_path / "missing"])


def test_unrendered_helm_templates_are_a_note(tmp_path: Path) -> None:
    chart = tmp_path / "chart"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text("apiVersion: v2\nname: c\nversion: 0.1.0\n")
    (chart / "templates" / "d.yaml").write_text(
        "kind: Deployment\n{{- if .Values.x }}\nspec: {}\n{{- end }}\n"
    )
    mset = manifests.collect([tmp_path])
    assert mset.parse_errors == []
    assert any("Helm template" in n for n in mset.notes)


# -- bad input ---------------------------------------------------------------------------


def _error(text: str, name: str = "bad.yaml") -> tuple[str, int | None, int | None]:
    with pytest.raises(ParseFailure) as info:
        manifests.load_text(text, name)
    e = info.value.error
    return e.message, e.line, e.column


def test_syntax_error_has_line_and_column() -> None:
    message, line, column = _error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: [a, b\n")
    assert line is not None and line >= 4 and column is not None
    assert message


def test_duplicate_key_is_an_error_at_the_second_key() -> None:
    message, line, column = _error("apiVersion: v1\nkind: Pod\nmetadata:\n  name: a\n  name: b\n")
    assert "duplicate key 'name'" in message and "line 4" in message
    assert (line, column) == (5, 3)


def test_tab_indentation() -> None:
    _, line, _ = _error("apiVersion: v1\nkind: Pod\nmetadata:\n\tname: a\n")
    assert line == 4


def test_alias_bomb_is_refused_fast() -> None:
    bomb = 'a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]\n'
    for i, prev in zip("bcdefghi", "abcdefgh", strict=True):
        bomb += f"{i}: &{i} [*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev},*{prev}]\n"
    started = time.perf_counter()
    message, line, _ = _error(bomb)
    assert "alias bomb" in message and line == 1
    assert time.perf_counter() - started < 2.0


def test_recursive_alias_is_refused() -> None:
    message, _, _ = _error("a: &x [1, *x]\n")
    assert "recursive" in message


def test_small_legitimate_anchors_load() -> None:
    text = (
        "apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, labels: &l {a: b}}\ndata: {x: y}\nextra: *l\n"
    )
    assert [o.name for o in load(text).objects] == ["c"]


def test_encodings_binary_and_size(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    utf16 = tmp_path / "utf16.yaml"
    utf16.write_bytes(
        codecs.BOM_UTF16_LE
        + "apiVersion: v1\nkind: Pod\nmetadata: {name: u}\nspec: {containers: []}\n".encode("utf-16-le")
    )
    assert [w.name for w in manifests.extract(manifests.read_file(utf16)).workloads] == ["u"]

    latin1 = tmp_path / "latin1.yaml"
    latin1.write_bytes(b"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: caf\xe9}\n")
    with pytest.raises(ParseFailure) as info:
        manifests.read_file(latin1)
    assert "UTF-8" in info.value.error.message and info.value.error.line == 3

    binary = tmp_path / "blob.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    with pytest.raises(SkippedFile) as skipped:
        manifests.read_file(binary)
    assert "binary" in skipped.value.skip.reason

    big = tmp_path / "big.yaml"
    big.write_text("a: 1\n" * 100)
    monkeypatch.setattr(files, "MAX_FILE_BYTES", 100)
    with pytest.raises(SkippedFile) as too_big:
        manifests.read_file(big)
    assert "limit" in too_big.value.skip.reason


def test_collect_goes_on_after_a_bad_file(tmp_path: Path) -> None:
    (tmp_path / "a-bad.yaml").write_text("kind: [\n")
    (tmp_path / "b-good.yaml").write_text(deployment())
    (tmp_path / "c-blob.yaml").write_bytes(b"\x00\x01\x02" * 100)
    mset = manifests.collect([tmp_path])
    assert [e.path for e in mset.parse_errors] == [str(tmp_path / "a-bad.yaml")]
    assert [w.name for w in mset.workloads] == ["api"]
    assert any("c-blob.yaml" in n and "binary" in n for n in mset.notes)


# -- property: nothing escapes ---------------------------------------------------------

SEED = deployment(
    "livenessProbe:\n  httpGet: {path: /livez, port: http}\nreadinessProbe: &r\n  tcpSocket: {port: 8080}\n",
    service=True,
)
_yaml_chars = st.sampled_from([*":-[]{}&*!|>'\"#%@`,?\t\n ", "\x00", "\ufeff", "é", "0", "a", "---\n", "..."])


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = SEED
    for _ in range(draw(st.integers(1, 6))):
        pos = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "replace"]))
        chunk = "".join(draw(st.lists(_yaml_chars, min_size=1, max_size=4)))
        end = min(len(text), pos + draw(st.integers(1, 12)))
        if op == "insert":
            text = text[:pos] + chunk + text[pos:]
        elif op == "delete":
            text = text[:pos] + text[end:]
        else:
            text = text[:pos] + chunk + text[end:]
    return text


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.one_of(mutated(), st.text(max_size=300)))
def test_loader_and_extraction_never_raise_anything_else(text: str) -> None:
    try:
        docs = manifests.load_text(text, "fuzz.yaml")
    except ParseFailure as exc:
        assert exc.error.path == "fuzz.yaml" and exc.error.message
        return
    mset = manifests.extract(docs)
    for w in mset.workloads:
        assert w.location.path == "fuzz.yaml"
        for c in w.containers:
            for p in c.probes.values():
                assert p.location.line is None or p.location.line >= 1


@settings(max_examples=60, deadline=None)
@given(st.binary(max_size=400))
def test_read_file_on_random_bytes(tmp_path_factory: pytest.TempPathFactory, data: bytes) -> None:
    path = tmp_path_factory.mktemp("fuzz") / "f.yaml"
    path.write_bytes(data)
    try:
        manifests.extract(manifests.read_file(path))
    except (ParseFailure, SkippedFile):
        pass


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(mutated())
def test_roundtrip_loader_never_raises_anything_else(text: str) -> None:
    try:
        docs = manifests.load_text(text, "fuzz.yaml", roundtrip=True)
    except ParseFailure as exc:
        assert exc.error.message
        return
    manifests.extract(docs)
