"""Route lookup (XL001/XL002/XL003/XL007) agrees with net/http's own ServeMux.

progs/muxoracle.go registers the patterns on a real http.ServeMux and reports which pattern serves
each GET path (or 404 / 405 / a redirect); ``_matching.route_for`` must pick the same pattern, find
none exactly where ServeMux answers 404 or 405, and find the subtree ServeMux redirects to (the
kubelet follows a redirect to the same host).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from pathlib import Path

import pytest

from tcpdoctor.evidence.golang import GoProgram, HandlerRegistration
from tcpdoctor.model import Location
from tcpdoctor.rules._matching import GoServer, route_for

pytestmark = pytest.mark.go
PROGS = Path(__file__).parent / "progs"

PATTERN_SETS = [
    [
        "/healthz",
        "GET /readyz",
        "/api/",
        "/files/{name}",
        "/static/{path...}",
        "POST /submit",
        "/exact/{$}",
        "GET /v1/users/{id}/orders",
    ],
    ["/", "/healthz", "/api/", "GET /events"],
]
PATHS = [
    "/healthz",
    "/healthz/",
    "/readyz",
    "/api/x/y",
    "/api/",
    "/files/a",
    "/files/a/b",
    "/static/a/b",
    "/submit",
    "/exact/",
    "/exact/x",
    "/v1/users/7/orders",
    "/v1/users/7",
    "/events",
    "/nothing",
    "/files/",
    "/static/",
    "/static",
    "/Healthz",
    "/api",
]


@pytest.fixture(scope="module")
def oracle(go_build: Callable[[Path], Path]) -> Callable[[list[str]], dict[str, str]]:
    binary = go_build(PROGS / "muxoracle.go")

    def ask(patterns: list[str]) -> dict[str, str]:
        proc = subprocess.run(
            [str(binary)],
            input=json.dumps({"patterns": patterns, "paths": PATHS}),
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        )
        result: dict[str, str] = json.loads(proc.stdout)
        return result

    return ask


def ours(patterns: list[str], path: str) -> str | None:
    program = GoProgram()
    for i, raw in enumerate(patterns):
        method, _, rest = raw.partition(" ") if " " in raw else ("", "", raw)
        program.registrations.append(
            HandlerRegistration(
                router="servemux",
                pattern=rest,
                location=Location("/repo/main.go", i + 10, 2),
                handler_ref=f"h{i}",
                method=method or None,
                mux="mux",
            )
        )
    server = GoServer(Location("/repo/main.go", 1, 1), "/repo", 8080, "mux", "main.main")
    reg, _ = route_for(program, server, path)
    if reg is None:
        return None
    return f"{reg.method} {reg.pattern}" if reg.method else reg.pattern


@pytest.mark.parametrize("patterns", PATTERN_SETS, ids=["no-root", "with-root"])
def test_route_for_agrees_with_servemux(
    oracle: Callable[[list[str]], dict[str, str]], patterns: list[str]
) -> None:
    truth = oracle(patterns)
    disagreements = []
    for path in PATHS:
        served = truth[path]
        mine = ours(patterns, path)
        if served in ("Not Found", "Method Not Allowed"):
            if mine is not None:
                disagreements.append((path, served, mine))
        elif served in ("Moved Permanently", "Temporary Redirect"):  # /api -> /api/: followed by the kubelet
            assert mine is not None, f"{path}: ServeMux redirects to a subtree we do not see"
        elif mine != served:
            disagreements.append((path, served, mine))
    assert disagreements == []
