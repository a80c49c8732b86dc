"""Property: on any probe/lifecycle combination, `fix` never crashes, keeps every comment in order,
its output parses, a second run changes nothing, the rules it fixed have fewer findings, and no
finding (rule, object) appears that the original did not have.

Derandomized (the same examples on every run, on every machine) with the case that once lost a
comment written inside a replaced `exec:` mapping pinned as an explicit example."""

from __future__ import annotations

from typing import Any

import yaml
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from tcpdoctor.fix import all_findings, findings_for, fix_text
from tcpdoctor.policy import Policy

VALUES = st.one_of(st.integers(-3, 40), st.sampled_from(["5", "x"]))
TIMING = ("initialDelaySeconds", "periodSeconds", "timeoutSeconds", "successThreshold", "failureThreshold")


@st.composite
def probes(draw: Any) -> dict[str, Any]:
    handler = draw(
        st.sampled_from(
            [
                {"httpGet": {"path": "/healthz", "port": "http"}},
                {"tcpSocket": {"port": 8080}},
                {"grpc": {"port": 8080}},
                {"exec": {"command": ["sh", "-c", "echo > /dev/tcp/127.0.0.1/8080"]}},
                {"exec": {"command": ["sh", "-c", "echo > /dev/tcp/db.internal/5432"]}},
                {"exec": {"command": ["curl", "-f", "localhost:8080"]}},
            ]
        )
    )
    probe = dict(handler)
    for key in draw(st.lists(st.sampled_from(TIMING), unique=True, max_size=5)):
        probe[key] = draw(VALUES)
    return probe


@st.composite
def manifests(draw: Any) -> str:
    container: dict[str, Any] = {
        "name": "app",
        "image": draw(st.sampled_from(["ghcr.io/acme/api:1", "gcr.io/distroless/static:nonroot"])),
        "ports": [{"name": "http", "containerPort": 8080}],
    }
    for key in draw(
        st.lists(st.sampled_from(["livenessProbe", "readinessProbe", "startupProbe"]), unique=True)
    ):
        container[key] = draw(probes())
    if "livenessProbe" in container and draw(st.booleans()):
        # readiness as the same check, one field apart: where a liveness fix can make the two identical
        ready = dict(container["livenessProbe"])
        for key in draw(st.lists(st.sampled_from(TIMING), unique=True, max_size=1)):
            ready[key] = draw(VALUES)
        container["readinessProbe"] = ready
    if draw(st.booleans()):
        container["lifecycle"] = {"preStop": {"sleep": {"seconds": draw(st.integers(0, 30))}}}
    if draw(st.booleans()):
        container["resources"] = {"limits": {"cpu": draw(st.sampled_from(["100m", "200m", "1"]))}}
    pod: dict[str, Any] = {"containers": [container]}
    if draw(st.booleans()):
        pod["terminationGracePeriodSeconds"] = draw(st.integers(0, 60))
    meta: dict[str, Any] = {"name": "api", "namespace": "shop"}
    annotations = {}
    if draw(st.booleans()):
        annotations["tcpdoctor.io/startup-seconds"] = str(draw(st.integers(1, 300)))
    if draw(st.booleans()):
        annotations["tcpdoctor.io/drain-seconds"] = str(draw(st.integers(0, 60)))
    if annotations:
        meta["annotations"] = annotations
    docs: list[dict[str, Any]] = [
        {
            "apiVersion": "apps/v1",
            "kind": "Deployment",
            "metadata": meta,
            "spec": {
                "selector": {"matchLabels": {"app": "api"}},
                "template": {"metadata": {"labels": {"app": "api"}}, "spec": pod},
            },
        }
    ]
    if draw(st.booleans()):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Service",
                "metadata": {"name": "api", "namespace": "shop"},
                "spec": {"selector": {"app": "api"}, "ports": [{"port": 80, "targetPort": "http"}]},
            }
        )
    text = yaml.safe_dump_all(docs, sort_keys=False, explicit_start=True)
    lines = text.splitlines()
    # comment lines above random lines, indented like them (what a team writes above a key)
    for n, at in enumerate(sorted(draw(st.sets(st.integers(1, len(lines) - 1), max_size=6)), reverse=True)):
        if lines[at].startswith("---"):
            continue
        indent = len(lines[at]) - len(lines[at].lstrip())
        lines.insert(at, " " * indent + f"# note {n}")
    return "# written by the property test\n" + "\n".join(lines) + "\n"


def comment_texts(text: str) -> list[str]:
    """Every comment of the file, whole-line or at the end of a line, in order (no `#` in values here)."""
    return [ln.split("#", 1)[1].strip() for ln in text.splitlines() if "#" in ln]


EXEC_WITH_COMMENTS = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
spec:
  template:
    spec:
      containers:
        - name: app
          image: ghcr.io/acme/api:1
          livenessProbe:
            exec:
              # the port only
              command:
                # sh is dash here
                - sh
                - -c
                - echo > /dev/tcp/127.0.0.1/8080  # no bash
            # checked every 10 s
            periodSeconds: 10
            failureThreshold: 1
          readinessProbe:
            exec:
              command: ["sh", "-c", "echo > /dev/tcp/127.0.0.1/8080"]
            periodSeconds: 10
            failureThreshold: 3
"""


# readiness's exec is an alias of liveness's (a YAML anchor): both are replaced, the comment is kept once
ANCHORED_EXEC = EXEC_WITH_COMMENTS.replace(
    "            exec:\n              # the port", "            exec: &probe\n              # the port"
).replace(
    '            exec:\n              command: ["sh", "-c", "echo > /dev/tcp/127.0.0.1/8080"]\n',
    "            exec: *probe\n",
)


@settings(max_examples=60, deadline=None, derandomize=True, suppress_health_check=[HealthCheck.too_slow])
@given(manifests())
@example("# written by the property test\n" + EXEC_WITH_COMMENTS)
@example("# written by the property test\n" + ANCHORED_EXEC)
def test_fix_is_safe_idempotent_and_effective(text: str) -> None:
    result = fix_text(text, "deploy/api.yaml")
    assert result.fixed.startswith("# written by the property test\n")
    assert comment_texts(result.fixed) == comment_texts(text)  # end-of-line ones may move above a new key
    assert len(list(yaml.safe_load_all(result.fixed))) == len(list(yaml.safe_load_all(text)))
    again = fix_text(result.fixed, "deploy/api.yaml")
    assert again.applied == [] and again.fixed == result.fixed
    if not result.applied:
        assert result.fixed == text
    # the fixed rules have fewer findings afterwards (what is left had no mechanical fix)
    fixed_rules = sorted({a.rule for a in result.applied})
    if fixed_rules:
        policy = Policy(select=fixed_rules)
        _, before = findings_for(text, "deploy/api.yaml", policy)
        _, after = findings_for(result.fixed, "deploy/api.yaml", policy)
        # (a rule may first fire on the way: a new preStop sleep can make the grace period short)
        for rule in fixed_rules:
            assert sum(f.rule == rule for f in after) <= sum(f.rule == rule for f in before), rule
        assert len(after) < len(before)
    # never worse: every (rule, object) found after the fix was there before, and what was fixed in
    # the file as written (one finding of its rule on its object) is gone
    everything_before = [(f.rule, str(f.subject)) for f in all_findings(text, "deploy/api.yaml", Policy())]
    everything_after = {
        (f.rule, str(f.subject)) for f in all_findings(result.fixed, "deploy/api.yaml", Policy())
    }
    assert everything_after <= set(everything_before), sorted(everything_after - set(everything_before))
    for a in result.applied:
        if a.location is not None and everything_before.count((a.rule, a.subject)) == 1:
            assert (a.rule, a.subject) not in everything_after, a
