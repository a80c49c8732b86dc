"""`tcpdoctor fix`: each fixer on a manifest that needs it and on a close one that does not; layout kept;
idempotent; atomic; unparseable files untouched; fixed manifests valid for the Kubernetes API schemas."""

from __future__ import annotations

import importlib.util
import os
import shutil
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.fix import FileFix, FixContext, findings_for, fix_text
from tcpdoctor.fix.yamldoc import split_documents
from tcpdoctor.policy import Policy

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed" / "deploy"
FIXED_RULES = {"PRB004", "PRB005", "PRB007", "PRB009", "PRB010", "PRB011", "PRB015", "PRB016"}


def deployment(container: str, *, pod: str = "", meta: str = "", service: bool = True) -> str:
    """A Deployment (plus a Service selecting it) with the given container body and pod spec lines."""
    body = textwrap.indent(textwrap.dedent(container).strip("\n"), " " * 10)
    pod_lines = textwrap.indent(textwrap.dedent(pod).strip("\n"), " " * 6) + "\n" if pod.strip() else ""
    meta_lines = textwrap.indent(textwrap.dedent(meta).strip("\n"), " " * 2) + "\n" if meta.strip() else ""
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\n"
        + meta_lines
        + "spec:\n  selector:\n    matchLabels: {app: api}\n  template:\n    metadata:\n      labels: {app: api}\n"
        + "    spec:\n"
        + pod_lines
        + "      containers:\n        - name: app\n          image: ghcr.io/acme/api:1\n"
        + "          ports:\n            - name: http\n              containerPort: 8080\n"
        + body
        + "\n"
    )
    if service:
        text += (
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\n"
            "spec:\n  selector: {app: api}\n  ports:\n    - port: 80\n      targetPort: http\n"
        )
    return text


# a container that no fixer touches: preStop present, grace covers it, sane probes
HEALTHY = """
livenessProbe:
  httpGet: {path: /healthz, port: http}
  failureThreshold: 6
readinessProbe:
  httpGet: {path: /readyz, port: http}
lifecycle:
  preStop:
    sleep: {seconds: 5}
"""


def fixed(text: str, select: str | None = None, **ctx: tuple[int, int]) -> FileFix:
    policy = Policy(select=[select] if select else [])
    return fix_text(text, "deploy/api.yaml", policy, FixContext(**ctx))


def remaining(text: str, rule: str) -> list[str]:
    _, findings = findings_for(text, "deploy/api.yaml", Policy(select=[rule]))
    return [f.message for f in findings]


def test_a_healthy_manifest_is_left_alone() -> None:
    text = deployment(HEALTHY)
    result = fixed(text)
    assert result.applied == [] and result.fixed == text


# --- one fixer at a time: must change / must not ------------------------------------------------------


def test_prb007_liveness_failure_threshold() -> None:
    text = deployment(HEALTHY.replace("failureThreshold: 6", "failureThreshold: 1"))
    result = fixed(text, "PRB007")
    # readiness gives up after the default 3 x 10 s: liveness waits twice that, not the bare default 3
    # (which would make the two probes' thresholds identical, PRB003, and liveness as quick, PRB004)
    assert "failureThreshold: 6" in result.fixed and remaining(result.fixed, "PRB007") == []
    assert remaining(result.fixed, "PRB003") == remaining(result.fixed, "PRB004") == []
    assert (
        fixed(deployment(HEALTHY.replace("failureThreshold: 6", "failureThreshold: 2")), "PRB007").applied
        == []
    )


def test_prb009_dev_tcp_becomes_tcp_socket_on_the_named_port() -> None:
    probe = 'livenessProbe:\n  exec:\n    command: ["sh", "-c", "echo > /dev/tcp/127.0.0.1/8080"]\n  periodSeconds: 10\n'
    text = deployment(HEALTHY.replace("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n", probe))
    result = fixed(text, "PRB009")
    assert "tcpSocket:\n              port: http\n            periodSeconds: 10" in result.fixed
    assert "/dev/tcp" not in result.fixed and remaining(result.fixed, "PRB009") == []
    # bash runs /dev/tcp fine: not a finding, nothing to fix
    bash = probe.replace('"sh"', '"bash"')
    text = deployment(HEALTHY.replace("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n", bash))
    assert fixed(text, "PRB009").applied == []


def test_prb009_without_a_mechanical_fix_is_left_to_the_author() -> None:
    """curl in a distroless image is a PRB009 finding, but there is no safe automatic replacement."""
    probe = "livenessProbe:\n  exec:\n    command: [curl, -f, http://localhost:8080/healthz]\n"
    text = deployment(HEALTHY.replace("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n", probe))
    text = text.replace("ghcr.io/acme/api:1", "gcr.io/distroless/static:nonroot")
    assert remaining(text, "PRB009")  # the rule fires ...
    assert fixed(text, "PRB009").fixed == text  # ... and the file is not touched


def test_prb010_rejected_values() -> None:
    text = deployment(
        HEALTHY.replace(
            "failureThreshold: 6", "failureThreshold: 6\n  successThreshold: 2\n  timeoutSeconds: 0"
        )
    )
    result = fixed(text, "PRB010")
    assert "successThreshold: 1" in result.fixed and "timeoutSeconds: 1" in result.fixed
    assert remaining(result.fixed, "PRB010") == []
    # successThreshold 2 is fine on readiness
    ok = deployment(
        HEALTHY.replace("port: http}\nlifecycle", "port: http}\n  successThreshold: 2\nlifecycle")
    )
    assert remaining(ok, "PRB010") == [] and fixed(ok, "PRB010").applied == []


def test_prb011_period_raised_to_timeout() -> None:
    text = deployment(
        HEALTHY.replace("failureThreshold: 6", "failureThreshold: 6\n  periodSeconds: 2\n  timeoutSeconds: 5")
    )
    result = fixed(text, "PRB011")
    assert "periodSeconds: 5\n            timeoutSeconds: 5" in result.fixed
    assert remaining(result.fixed, "PRB011") == []
    close = HEALTHY.replace(
        "failureThreshold: 6", "failureThreshold: 6\n  periodSeconds: 5\n  timeoutSeconds: 5"
    )
    assert fixed(deployment(close), "PRB011").applied == []


def test_prb005_adds_a_startup_probe_for_the_stated_start_up() -> None:
    meta = 'annotations:\n  tcpdoctor.io/startup-seconds: "120"'
    text = deployment(HEALTHY, meta=meta)
    result = fixed(text, "PRB005")
    assert [a.rule for a in result.applied] == ["PRB005"]
    assert (
        "startupProbe:\n            httpGet: {path: /healthz, port: http}\n            periodSeconds: 10\n"
        in result.fixed
    )
    assert "failureThreshold: 18" in result.fixed  # 1.5 x 120 s / 10 s
    assert remaining(result.fixed, "PRB005") == []
    # liveness already allows 130 s: nothing to cover
    slow = HEALTHY.replace("failureThreshold: 6", "failureThreshold: 13")
    assert fixed(deployment(slow, meta=meta), "PRB005").applied == []


def test_prb005_widens_a_startup_probe_narrower_than_liveness() -> None:
    startup = (
        HEALTHY
        + "startupProbe:\n  httpGet: {path: /healthz, port: http}\n  periodSeconds: 5\n  failureThreshold: 2\n"
    )
    result = fixed(deployment(startup), "PRB005")
    assert "periodSeconds: 5\n            failureThreshold: 12" in result.fixed  # liveness: 6 x 10 s = 60 s
    assert remaining(result.fixed, "PRB005") == []


def test_prb015_native_sleep_or_exec_for_old_clusters() -> None:
    text = deployment(HEALTHY.replace("lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n", ""))
    result = fixed(text, "PRB015")
    assert (
        "lifecycle:\n            preStop:\n              sleep:\n                seconds: 5\n" in result.fixed
    )
    assert "Kubernetes >= 1.30" in result.applied[0].description
    assert remaining(result.fixed, "PRB015") == []
    old = fixed(text, "PRB015", kubernetes_version=(1, 28))
    assert "exec:\n                command: [sleep, '5']" in old.fixed
    # no Service in front: no preStop needed
    alone = deployment(
        HEALTHY.replace("lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n", ""), service=False
    )
    assert fixed(alone, "PRB015").applied == []


def test_prb016_grace_period_covers_sleep_and_stated_drain() -> None:
    meta = 'annotations:\n  tcpdoctor.io/drain-seconds: "20"'
    text = deployment(HEALTHY, pod="terminationGracePeriodSeconds: 10", meta=meta)
    result = fixed(text, "PRB016")
    assert "terminationGracePeriodSeconds: 30\n" in result.fixed  # 5 s sleep + 20 s drain + 5 s margin
    assert remaining(result.fixed, "PRB016") == []
    assert (
        fixed(deployment(HEALTHY, pod="terminationGracePeriodSeconds: 25", meta=meta), "PRB016").applied == []
    )


def test_fixes_follow_each_other_until_nothing_is_left() -> None:
    """Adding a preStop sleep makes a short grace period too short: both are fixed in one run."""
    text = deployment(
        HEALTHY.replace("lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n", ""),
        pod="terminationGracePeriodSeconds: 12",
    )
    result = fixed(text)
    assert [a.rule for a in result.applied] == ["PRB015", "PRB016"]
    # PRB015 was in the file as written (its position is the container's line); PRB016 only came up
    # once the sleep was added, so it has no position in the user's file
    prestop, grace = result.applied
    assert (
        prestop.location is not None and text.splitlines()[prestop.location.line - 1].strip() == "- name: app"
    )
    assert grace.location is None
    assert "terminationGracePeriodSeconds: 20" in result.fixed
    assert fixed(result.fixed).applied == []


def test_suppressed_and_deselected_findings_are_not_fixed() -> None:
    # failureThreshold 1 behind a Service is PRB007 and PRB004 (1 x 10 s <= readiness's 3 x 10 s)
    body = HEALTHY.replace("failureThreshold: 6", "failureThreshold: 1")
    ignored = deployment(body, meta='annotations:\n  tcpdoctor.io/ignore: "PRB007,PRB004"')
    assert fixed(ignored).fixed == ignored
    result = fix_text(deployment(body), "deploy/api.yaml", Policy(ignore=["PRB007", "PRB004"]))
    assert result.applied == []
    # with PRB007 alone ignored, PRB004 still raises the threshold (and says so)
    only = fix_text(deployment(body), "deploy/api.yaml", Policy(ignore=["PRB007"]))
    assert [a.rule for a in only.applied] == ["PRB004"] and "failureThreshold: 6" in only.fixed


# --- layout -------------------------------------------------------------------------------------------


def test_example_fixes_keep_comments_quotes_and_other_documents() -> None:
    text = (EXAMPLE / "livefeed.yaml").read_text()
    result = fix_text(text, "livefeed.yaml")
    assert {a.rule for a in result.applied} == {"PRB007", "PRB015", "PRB016"}
    # every comment line of the original is still there, the header above the first --- included
    for line in text.splitlines():
        if line.strip().startswith("#"):
            assert line in result.fixed.splitlines()
    assert 'prometheus.io/scrape: "true"' in result.fixed  # quoting
    assert 'args: ["--listen=:8080", "--upstream=ingest.markets.svc:9090"]' in result.fixed  # flow style
    before = split_documents("a", text).documents
    after = split_documents("b", result.fixed).documents
    assert len(before) == len(after) == 2 and after[1].body == before[1].body  # the Service, byte for byte
    # key order: the edited keys stay where they were, the new ones go after the probes
    keys = [
        ln.strip().split(":")[0]
        for ln in result.fixed.splitlines()
        if ln.startswith("          ") and not ln.startswith("           ")
    ]
    assert keys[-3:] == ["readinessProbe", "livenessProbe", "lifecycle"]


def test_example_ingest_all_fixes_and_idempotence() -> None:
    text = (EXAMPLE / "ingest.yaml").read_text()
    result = fix_text(text, "ingest.yaml")
    assert {a.rule for a in result.applied} == {"PRB004", "PRB005", "PRB009", "PRB010", "PRB011", "PRB015"}
    assert fix_text(result.fixed, "ingest.yaml").fixed == result.fixed
    _, left = findings_for(result.fixed, "ingest.yaml", Policy(select=sorted(FIXED_RULES)))
    assert left == []
    # the CronJob document after the fixed Deployment is untouched, comment included
    assert result.fixed.endswith(text[text.index("# nightly snapshot") :])


FLUSH_STYLE = """\
apiVersion: v1
kind: Pod
metadata:
    name: api
    labels:
        app: api
spec:
    containers:
    - name: app
      image: ghcr.io/acme/api:1
      ports:
      - containerPort: 8080
      livenessProbe:
          tcpSocket:
              port: 8080
          failureThreshold: 1
"""


def test_indentation_style_is_kept() -> None:
    """A file with 4-space mappings and sequences flush with their key stays that way."""
    result = fixed(FLUSH_STYLE, "PRB007")
    assert [a.rule for a in result.applied] == ["PRB007"]
    assert result.fixed == FLUSH_STYLE.replace("failureThreshold: 1", "failureThreshold: 3")


def test_kind_list_items_are_fixed() -> None:
    doc = deployment(HEALTHY.replace("failureThreshold: 6", "failureThreshold: 1"), service=False)
    items = textwrap.indent(doc, "    ").replace("    apiVersion: apps/v1", "  - apiVersion: apps/v1", 1)
    text = "apiVersion: v1\nkind: List\nitems:\n" + items
    result = fixed(text, "PRB007")
    assert [a.rule for a in result.applied] == ["PRB007"]
    assert "failureThreshold: 6" in result.fixed


# --- the command -----------------------------------------------------------------------------------------


@pytest.fixture
def deploy_copy(tmp_path: Path) -> Path:
    target = tmp_path / "deploy"
    shutil.copytree(EXAMPLE, target)
    return target


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(app, ["fix", *args])
    return result.exit_code, result.stdout, result.stderr


def test_cli_diff_then_write_then_nothing(deploy_copy: Path) -> None:
    files = sorted(deploy_copy.glob("*.yaml"))
    before = {p: p.read_bytes() for p in files}
    os.chmod(files[0], 0o640)
    code, diff, err = run(str(deploy_copy))
    assert code == 1
    assert diff.count("\n+++ b/") + diff.startswith("+++ b/") == 2 and "@@ " in diff
    assert "would fix PRB009" in err
    assert {p: p.read_bytes() for p in files} == before  # a diff only

    code, out, err = run("--write", str(deploy_copy))
    assert code == 0 and out == "" and "2 files fixed" in err
    assert oct(files[0].stat().st_mode & 0o777) == oct(0o640)
    assert sorted(p.name for p in deploy_copy.iterdir()) == [
        "ingest.yaml",
        "livefeed.yaml",
    ]  # no temp files left

    code, out, err = run(str(deploy_copy))
    assert (code, out) == (0, "")


def test_cli_diff_applies_with_git_apply(
    deploy_copy: Path, tmp_path: Path, require: Callable[[bool, str], None]
) -> None:
    git = shutil.which("git")
    require(git is not None, "needs git")
    assert git is not None
    import subprocess

    cwd = os.getcwd()
    try:
        os.chdir(tmp_path)
        code, diff, _ = run("deploy")
    finally:
        os.chdir(cwd)
    assert code == 1
    subprocess.run([git, "apply", "-"], input=diff, text=True, cwd=tmp_path, check=True)
    written = {p.name: p.read_text() for p in deploy_copy.glob("*.yaml")}
    for name, text in written.items():
        assert fix_text(text, name).applied == []


def test_cli_never_touches_a_file_it_cannot_parse(deploy_copy: Path) -> None:
    broken = deploy_copy / "broken.yaml"
    broken.write_text("apiVersion: v1\nkind: Pod\nmetadata:\n  name: x\n   bad: indent\n")
    stamp = broken.stat().st_mtime_ns
    code, _, err = run("--write", str(deploy_copy))
    assert code == 2
    assert broken.read_text().endswith("   bad: indent\n") and broken.stat().st_mtime_ns == stamp
    line = next(ln for ln in err.splitlines() if "broken.yaml" in ln)
    assert ":5:" in line and "left untouched" in line
    # the other files were still fixed
    assert "preStop" in (deploy_copy / "livefeed.yaml").read_text()


def test_cli_bad_kubernetes_version_is_usage_error(deploy_copy: Path) -> None:
    from tcpdoctor.model import InputError

    result = CliRunner().invoke(app, ["fix", "--kubernetes-version", "latest", str(deploy_copy)])
    assert isinstance(result.exception, InputError)


# --- the Kubernetes API schemas ----------------------------------------------------------------------------


def _validate(text: str, version: str) -> list[str]:
    import kubernetes_validate
    import yaml

    errors = []
    for doc in yaml.safe_load_all(text):
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            errors.append(f"{doc['kind']}/{doc['metadata']['name']}: {exc.message}")
    return errors


@pytest.mark.parametrize("name", ["livefeed.yaml", "ingest.yaml"])
def test_fixed_example_validates_against_the_api_schema(
    name: str, require: Callable[[bool, str], None]
) -> None:
    require(
        importlib.util.find_spec("kubernetes_validate") is not None, "needs kubernetes-validate (test extra)"
    )
    text = (EXAMPLE / name).read_text()
    assert _validate(text, "1.30.0") == []
    result = fix_text(text, name)
    assert result.applied
    assert _validate(result.fixed, "1.30.0") == []


def test_sleep_action_needs_1_30_and_exec_fallback_validates_on_1_28(
    require: Callable[[bool, str], None],
) -> None:
    """The version claim of the PRB015 fix, checked against the API schemas themselves."""
    require(
        importlib.util.find_spec("kubernetes_validate") is not None, "needs kubernetes-validate (test extra)"
    )
    text = (EXAMPLE / "livefeed.yaml").read_text()
    native = fix_text(text, "livefeed.yaml")
    assert any("sleep" in e for e in _validate(native.fixed, "1.28.0"))  # 1.28 has no sleep action
    old = fix_text(text, "livefeed.yaml", ctx=FixContext(kubernetes_version=(1, 28)))
    assert _validate(old.fixed, "1.28.0") == []


def test_cli_leaves_json_and_non_kubernetes_yaml_alone(tmp_path: Path) -> None:
    manifest = deployment(HEALTHY.replace("failureThreshold: 6", "failureThreshold: 1"), service=False)
    import json

    import yaml

    as_json = tmp_path / "api.json"
    as_json.write_text(json.dumps(yaml.safe_load(manifest), indent=2))
    values = tmp_path / "values.yaml"
    values.write_text("# helm values\nreplicaCount: 2\nprobe:\n  failureThreshold: 1\n")
    before = {p: p.read_bytes() for p in (as_json, values)}
    code, out, err = run("--write", str(tmp_path))
    assert code == 0 and out == ""
    assert "JSON manifests are not rewritten" in err
    assert {p: p.read_bytes() for p in (as_json, values)} == before


def test_crlf_line_ends_are_kept() -> None:
    text = deployment(HEALTHY.replace("failureThreshold: 6", "failureThreshold: 1")).replace("\n", "\r\n")
    result = fixed(text, "PRB007")
    assert [a.rule for a in result.applied] == ["PRB007"]
    assert result.fixed == text.replace("failureThreshold: 1", "failureThreshold: 6")


def test_a_comment_above_the_next_item_stays_above_it() -> None:
    """ruamel hangs the comment block before a key on the previous value; an added key must not steal it."""
    text = deployment(
        "readinessProbe:\n  httpGet: {path: /readyz, port: http}  # main port\n\n"
        "# the sidecar ships the logs\n"
    )
    text = text.replace(
        "# the sidecar ships the logs\n",
        "# the sidecar ships the logs\n        - name: logs\n          image: fluent/fluent-bit:3\n",
    )
    result = fixed(text, "PRB015")
    assert [a.rule for a in result.applied] == ["PRB015"]
    lines = result.fixed.splitlines()
    comment = lines.index("          # the sidecar ships the logs")
    assert lines[comment + 1] == "        - name: logs"
    assert "port: http}  # main port" in lines[lines.index("          lifecycle:") - 1]


def test_comments_after_a_replaced_exec_probe_are_kept() -> None:
    probe = (
        "livenessProbe:\n  exec:\n    command: [sh, -c, 'echo > /dev/tcp/127.0.0.1/8080']\n"
        "  # checks the port only\n  periodSeconds: 10\n"
    )
    text = deployment(HEALTHY.replace("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n", probe))
    result = fixed(text, "PRB009")
    assert "port: http\n            # checks the port only\n            periodSeconds: 10\n" in result.fixed


def test_comments_inside_a_replaced_exec_go_above_the_new_key() -> None:
    """Whole-line comments inside `exec:` and the end-of-line comment of its command, in their order."""
    probe = (
        "livenessProbe:\n  exec:\n    # the port only\n"
        "    command: [sh, -c, 'echo > /dev/tcp/127.0.0.1/8080']  # sh is dash here\n  periodSeconds: 10\n"
    )
    text = deployment(HEALTHY.replace("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n", probe))
    result = fixed(text, "PRB009")
    assert (
        "livenessProbe:\n            # the port only\n            # sh is dash here\n"
        "            tcpSocket:\n              port: http\n            periodSeconds: 10\n"
    ) in result.fixed
