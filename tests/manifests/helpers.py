"""Small builders for manifest tests: a Deployment with the probes/spec given, and the rules' findings on it."""

from __future__ import annotations

import textwrap

from tcpdoctor.evidence.manifests import ManifestSet
from tcpdoctor.model import Finding, Location
from tcpdoctor.rules.registry import get_rule
from tcpdoctor.sources import manifests

# Line 11 is the container's `- name: app` (column 9 is `name`); container fields start on line 15.
HEAD = """\
apiVersion: apps/v1
kind: Deployment
metadata:
  name: api
{annotations}spec:
  template:
    metadata:
      labels: {{app: api}}
    spec:
      containers:
      - name: app
        image: {image}
        ports:
        - {{name: http, containerPort: 8080}}
"""

SERVICE = """\
---
apiVersion: v1
kind: Service
metadata:
  name: api
spec:
  selector: {app: api}
  ports:
  - {port: 80, targetPort: http}
"""


def deployment(
    container: str = "",
    *,
    pod: str = "",
    service: bool = False,
    image: str = "example/api:1",
    annotations: str = "",
) -> str:
    """A Deployment `api` (container `app`, port http=8080) + ``container`` fields (+ pod spec fields)."""
    ann = ""
    if annotations:
        ann = "  annotations:\n" + textwrap.indent(textwrap.dedent(annotations), "    ")
    text = HEAD.format(image=image, annotations=ann)
    if container:
        text += textwrap.indent(textwrap.dedent(container), " " * 8)
    if pod:
        text += textwrap.indent(textwrap.dedent(pod), " " * 6)
    if service:
        text += SERVICE
    return text


def load(text: str, path: str = "deploy.yaml") -> ManifestSet:
    return manifests.extract(manifests.load_text(text, path))


def findings(rule_id: str, text: str) -> list[Finding]:
    rule = get_rule(rule_id)
    assert rule is not None, rule_id
    return list(rule(manifests.bag_of(load(text))))


def lines(found: list[Finding]) -> list[int | None]:
    return [f.location.line if f.location else None for f in found]


def text_at(text: str, loc: Location | None) -> str:
    """The manifest text from a (1-based) location to the end of its line."""
    assert loc is not None and loc.line is not None and loc.column is not None, loc
    return text.splitlines()[loc.line - 1][loc.column - 1 :]
