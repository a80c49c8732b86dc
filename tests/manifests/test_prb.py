"""PRB001-PRB017: for every rule a manifest that must trigger it and a close one that must not.

Line numbers are checked against the builder in helpers.py: the container's `- name: app` is
line 11 (column 9) and the first container field written by a test is line 15.
"""

from __future__ import annotations

from tcpdoctor.model import Severity

from .helpers import deployment, findings, lines, text_at

LIVE_READY = """\
livenessProbe:
  httpGet: {path: /livez, port: http}
readinessProbe:
  httpGet: {path: /readyz, port: http}
"""


# -- PRB001 ------------------------------------------------------------------------------


def test_prb001_deployment_without_liveness() -> None:
    found = findings("PRB001", deployment())
    assert len(found) == 1
    assert (found[0].location.line, found[0].location.column) == (11, 9)  # type: ignore[union-attr]
    assert found[0].subject.container == "app" and found[0].subject.name == "api"


def test_prb001_not_with_liveness_nor_for_jobs() -> None:
    assert findings("PRB001", deployment(LIVE_READY)) == []
    job = deployment().replace("apps/v1\nkind: Deployment", "batch/v1\nkind: Job")
    assert findings("PRB001", job) == []


# -- PRB002 ------------------------------------------------------------------------------


def test_prb002_service_backed_without_readiness() -> None:
    found = findings("PRB002", deployment("livenessProbe: {tcpSocket: {port: http}}\n", service=True))
    assert lines(found) == [11]
    assert "Service/api port 80 → http" in found[0].message


def test_prb002_not_with_readiness_or_without_service() -> None:
    assert findings("PRB002", deployment(LIVE_READY, service=True)) == []
    assert findings("PRB002", deployment()) == []
    other = deployment(service=True).replace("selector: {app: api}", "selector: {app: other}")
    assert findings("PRB002", other) == []


# -- PRB003 ------------------------------------------------------------------------------

SAME = """\
livenessProbe:
  httpGet: {path: /healthz, port: http}
readinessProbe:
  httpGet: {path: /healthz, port: 8080}
"""


def test_prb003_identical_probes_even_named_vs_numeric_port() -> None:
    found = findings("PRB003", deployment(SAME))
    assert lines(found) == [15]
    assert "/healthz" in found[0].message


def test_prb003_not_when_paths_differ() -> None:
    assert findings("PRB003", deployment(LIVE_READY)) == []
    different_threshold = SAME.replace(
        "port: http}\nreadiness", "port: http}\n  failureThreshold: 6\nreadiness"
    )
    assert findings("PRB003", deployment(different_threshold)) == []


# -- PRB004 ------------------------------------------------------------------------------


def test_prb004_equal_default_windows_behind_a_service() -> None:
    found = findings("PRB004", deployment(LIVE_READY, service=True))
    assert len(found) == 1
    assert "30 s" in found[0].message and "the same as" in found[0].message
    assert "Service/api port 80" in found[0].message
    # the Service is quoted where its port stands (the SERVICE builder's `- {port: 80, ...}`)
    assert [e.location.line for e in found[0].evidence if e.detail.startswith("Service/")] == [27]  # type: ignore[union-attr]


def test_prb004_not_on_a_worker_no_service_selects() -> None:
    """Readiness only decides rotation behind a Service: a worker with default probes is not a finding."""
    assert findings("PRB004", deployment(LIVE_READY)) == []
    other = deployment(LIVE_READY, service=True).replace("selector: {app: api}", "selector: {app: other}")
    assert findings("PRB004", other) == []


def test_prb004_not_when_liveness_waits_longer() -> None:
    longer = LIVE_READY.replace("port: http}\nreadiness", "port: http}\n  failureThreshold: 6\nreadiness")
    assert findings("PRB004", deployment(longer, service=True)) == []


# -- PRB005 ------------------------------------------------------------------------------


def test_prb005_stated_startup_longer_than_liveness_budget() -> None:
    text = deployment(LIVE_READY, annotations='tcpdoctor.io/startup-seconds: "90"\n')
    found = findings("PRB005", text)
    assert len(found) == 1
    assert "90 s" in found[0].message and "30 s" in found[0].message
    assert found[0].location.line == 17  # livenessProbe key (two annotation lines shift it)  # type: ignore[union-attr]
    # the annotation is quoted at its own value (line 6), not at `metadata:` or the object's first line
    (stated,) = [e for e in found[0].evidence if e.detail.startswith("tcpdoctor.io/startup-seconds")]
    assert stated.location.line == 6 and text_at(text, stated.location) == '"90"'  # type: ignore[union-attr]


def test_prb005_covered_by_a_startup_probe() -> None:
    covered = LIVE_READY + "startupProbe:\n  httpGet: {path: /livez, port: http}\n  failureThreshold: 30\n"
    assert findings("PRB005", deployment(covered, annotations='tcpdoctor.io/startup-seconds: "90"\n')) == []
    # without a stated start-up time there is nothing to compare with
    assert findings("PRB005", deployment(LIVE_READY)) == []


def test_prb005_startup_probe_stricter_than_liveness() -> None:
    strict = """\
livenessProbe:
  httpGet: {path: /livez, port: http}
  initialDelaySeconds: 60
startupProbe:
  httpGet: {path: /livez, port: http}
  failureThreshold: 2
"""
    found = findings("PRB005", deployment(strict))
    assert len(found) == 1 and "stricter" in found[0].message
    assert found[0].location.line == 18  # type: ignore[union-attr]


# -- PRB006 ------------------------------------------------------------------------------

THROTTLED = """\
resources: {limits: {cpu: 250m}}
readinessProbe:
  httpGet: {path: /readyz, port: http}
"""


def test_prb006_one_second_timeout_under_small_cpu_limit() -> None:
    found = findings("PRB006", deployment(THROTTLED))
    assert lines(found) == [16]
    message = found[0].message
    # 250m: 25 ms per 100 ms period; 50 ms of CPU needs 2 periods, ~200 ms; 250 ms of CPU per 1 s timeout
    assert "250m CPU limit gives 25 ms of CPU per 100 ms period" in message
    assert "spread over 2 periods takes about 200 ms" in message and "only 250 ms of CPU per 1 s" in message
    (limit,) = [e for e in found[0].evidence if e.detail.startswith("resources.limits.cpu")]
    assert limit.location.line == 15  # type: ignore[union-attr]
    assert text_at(deployment(THROTTLED), limit.location).startswith("250m}")  # the value, not `- name:`


def test_prb006_arithmetic_follows_the_limit() -> None:
    found = findings("PRB006", deployment(THROTTLED.replace("250m", "100m")))
    assert "10 ms of CPU per 100 ms period" in found[0].message
    assert "spread over 5 periods takes about 500 ms" in found[0].message


def test_prb006_not_with_longer_timeout_or_bigger_limit() -> None:
    assert findings("PRB006", deployment(THROTTLED + "  timeoutSeconds: 3\n")) == []
    assert findings("PRB006", deployment(THROTTLED.replace("250m", '"0.5"'))) == []
    assert findings("PRB006", deployment(THROTTLED.replace("250m", '"0"'))) == []  # no quota at all
    assert (
        findings(
            "PRB006",
            deployment(THROTTLED.replace("httpGet: {path: /readyz, port: http}", "tcpSocket: {port: http}")),
        )
        == []
    )


# -- PRB007 ------------------------------------------------------------------------------


def test_prb007_liveness_failure_threshold_one_points_at_the_field() -> None:
    text = deployment("livenessProbe:\n  httpGet: {path: /livez, port: http}\n  failureThreshold: 1\n")
    found = findings("PRB007", text)
    assert [(f.location.line, f.location.column) for f in found] == [(17, 29)]  # type: ignore[union-attr]


def test_prb007_not_on_readiness() -> None:
    text = deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  failureThreshold: 1\n")
    assert findings("PRB007", text) == []


# -- PRB008 ------------------------------------------------------------------------------


def test_prb008_unknown_port_name_is_an_error() -> None:
    found = findings("PRB008", deployment("readinessProbe:\n  httpGet: {path: /readyz, port: metrics}\n"))
    assert len(found) == 1 and found[0].severity == Severity.ERROR
    assert "never becomes Ready" in found[0].message
    assert found[0].location.line == 16  # type: ignore[union-attr]


def test_prb008_undeclared_number_is_info() -> None:
    found = findings("PRB008", deployment("readinessProbe:\n  tcpSocket: {port: 9090}\n"))
    assert [f.severity for f in found] == [Severity.INFO]


def test_prb008_not_for_declared_ports() -> None:
    assert findings("PRB008", deployment(LIVE_READY)) == []
    assert findings("PRB008", deployment("readinessProbe:\n  tcpSocket: {port: 8080}\n")) == []


# -- PRB009 ------------------------------------------------------------------------------


def _exec(command: str, image: str = "example/api:1") -> str:
    return deployment(f"livenessProbe:\n  exec:\n    command: {command}\n", image=image)


DEV_TCP = '[sh, -c, "echo > /dev/tcp/127.0.0.1/8080"]'


def test_prb009_dev_tcp_under_sh_in_an_unknown_image_is_a_warning() -> None:
    found = findings("PRB009", _exec(DEV_TCP))
    assert len(found) == 1 and "bash-only" in found[0].message
    assert found[0].severity == Severity.WARNING
    assert "fails where sh is dash or busybox ash: the image example/api:1 does not say" in found[0].message
    assert found[0].location.line == 17  # type: ignore[union-attr]
    (image,) = [e for e in found[0].evidence if e.detail.startswith("image ")]
    assert image.location.line == 12  # the `image:` line, not the container's `- name:`  # type: ignore[union-attr]


def test_prb009_dev_tcp_under_sh_in_a_dash_or_ash_image_is_an_error() -> None:
    for image, why in (
        ("python:3.12-slim", "-slim variant of a Debian-based official image, where sh is dash"),
        ("debian:bookworm", "is Debian, where sh is dash"),
        ("docker.io/library/ubuntu:24.04", "is Ubuntu, where sh is dash"),
        ("node:20-alpine", "Alpine-based, where sh is busybox ash"),
        ("busybox:1.36", "busybox, whose sh is ash"),
        ("eclipse-temurin:21-jre-jammy", "Ubuntu jammy"),
        ("gcr.io/distroless/base:debug", "busybox (ash)"),
    ):
        (found,) = findings("PRB009", _exec(DEV_TCP, image))
        assert found.severity == Severity.ERROR, image
        assert (
            f"fails where sh is dash or busybox ash: the image {image} " in found.message
            and why in found.message
        )


def test_prb009_named_dash_is_an_error_whatever_the_image() -> None:
    (found,) = findings("PRB009", _exec('[/bin/dash, -c, "echo > /dev/tcp/127.0.0.1/8080"]'))
    assert found.severity == Severity.ERROR and "dash does not implement" in found.message
    (found,) = findings("PRB009", _exec('[busybox, sh, -c, "echo > /dev/tcp/127.0.0.1/8080"]'))
    assert found.severity == Severity.ERROR and "runs busybox sh -c with /dev/tcp" in found.message


def test_prb009_dev_tcp_is_fine_under_bash_or_where_sh_is_bash() -> None:
    assert findings("PRB009", _exec('[bash, -c, "echo > /dev/tcp/127.0.0.1/8080"]')) == []
    for image in ("registry.access.redhat.com/ubi9/ubi-minimal:9.4", "fedora:40", "amazonlinux:2023"):
        assert findings("PRB009", _exec(DEV_TCP, image)) == [], image


def test_prb009_curl_in_distroless() -> None:
    found = findings(
        "PRB009", _exec("[curl, -f, http://localhost:8080/healthz]", "gcr.io/distroless/static:nonroot")
    )
    assert len(found) == 1 and "distroless" in found[0].message
    debug = _exec("[wget, -q, http://localhost:8080/healthz]", "gcr.io/distroless/base:debug")
    assert findings("PRB009", debug) == []


def test_prb009_whole_command_in_one_string() -> None:
    found = findings("PRB009", _exec('["curl -f http://localhost:8080/healthz"]'))
    assert len(found) == 1 and "one argument" in found[0].message
    assert findings("PRB009", _exec("[/bin/grpc_health_probe, -addr=:8080]")) == []


# -- PRB010 ------------------------------------------------------------------------------


def test_prb010_liveness_success_threshold() -> None:
    text = deployment("livenessProbe:\n  httpGet: {path: /livez, port: http}\n  successThreshold: 2\n")
    found = findings("PRB010", text)
    assert [(f.severity, f.location.line) for f in found] == [(Severity.ERROR, 17)]  # type: ignore[union-attr]


def test_prb010_zero_timeout_is_silently_defaulted() -> None:
    text = deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  timeoutSeconds: 0\n")
    found = findings("PRB010", text)
    assert len(found) == 1 and found[0].severity == Severity.WARNING and "default 1" in found[0].message


def test_prb010_probe_on_plain_init_container() -> None:
    init = "initContainers:\n- name: migrate\n  image: example/migrate:1\n  readinessProbe: {exec: {command: [true]}}\n"
    found = findings("PRB010", deployment(pod=init))
    assert len(found) == 1 and "init containers" in found[0].message


def test_prb010_valid_values_and_sidecars_pass() -> None:
    ok = "readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  successThreshold: 2\n"
    assert findings("PRB010", deployment(ok)) == []
    sidecar = (
        "initContainers:\n- name: proxy\n  image: example/proxy:1\n  restartPolicy: Always\n"
        "  readinessProbe: {tcpSocket: {port: 15000}}\n"
    )
    assert findings("PRB010", deployment(pod=sidecar)) == []


# -- PRB011 ------------------------------------------------------------------------------


def test_prb011_period_shorter_than_timeout() -> None:
    text = deployment(
        "readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  periodSeconds: 2\n  timeoutSeconds: 5\n"
    )
    found = findings("PRB011", text)
    assert lines(found) == [17] and "15 s" in found[0].message


def test_prb011_not_when_period_covers_timeout() -> None:
    text = deployment(
        "readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  periodSeconds: 5\n  timeoutSeconds: 5\n"
    )
    assert findings("PRB011", text) == []


# -- PRB012 / PRB013 ---------------------------------------------------------------------


def test_prb012_streaming_path() -> None:
    found = findings("PRB012", deployment("readinessProbe:\n  httpGet: {path: /api/events, port: http}\n"))
    assert lines(found) == [16]
    assert (
        findings("PRB012", deployment("readinessProbe:\n  httpGet: {path: /prevent-stale, port: http}\n"))
        == []
    )


def test_prb013_liveness_on_readiness_path() -> None:
    found = findings("PRB013", deployment("livenessProbe:\n  httpGet: {path: /readyz, port: http}\n"))
    assert len(found) == 1 and "'readyz'" in found[0].message
    full = findings("PRB013", deployment("livenessProbe:\n  httpGet: {path: /health/full, port: http}\n"))
    assert len(full) == 1


def test_prb013_not_on_readiness_or_plain_health() -> None:
    assert findings("PRB013", deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http}\n")) == []
    assert findings("PRB013", deployment("livenessProbe:\n  httpGet: {path: /healthz, port: http}\n")) == []


# -- PRB014 ------------------------------------------------------------------------------


def test_prb014_host_and_scheme_mismatch() -> None:
    host = findings(
        "PRB014", deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http, host: 127.0.0.1}\n")
    )
    assert len(host) == 1 and "127.0.0.1" in host[0].message
    tls = deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http}\n").replace(
        "name: http,", "name: https,"
    )
    tls = tls.replace("port: http}", "port: https}")
    found = findings("PRB014", tls)
    assert len(found) == 1 and "HTTPS" in (found[0].fix.description if found[0].fix else "")


def test_prb014_not_when_scheme_matches() -> None:
    tls = deployment("readinessProbe:\n  httpGet: {path: /readyz, port: https, scheme: HTTPS}\n")
    tls = tls.replace("name: http,", "name: https,")
    assert findings("PRB014", tls) == []
    assert findings("PRB014", deployment(LIVE_READY)) == []


# -- PRB015 / PRB016 ---------------------------------------------------------------------


def test_prb015_service_backed_without_prestop() -> None:
    found = findings("PRB015", deployment(LIVE_READY, service=True))
    assert lines(found) == [11]
    assert "1.30" in (found[0].fix.description if found[0].fix else "")


def test_prb015_not_with_sleep_or_without_service() -> None:
    sleep = LIVE_READY + "lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n"
    assert findings("PRB015", deployment(sleep, service=True)) == []
    exec_sleep = LIVE_READY + 'lifecycle:\n  preStop:\n    exec: {command: [/bin/sh, -c, "sleep 10"]}\n'
    assert findings("PRB015", deployment(exec_sleep, service=True)) == []
    assert findings("PRB015", deployment(LIVE_READY)) == []


def test_prb016_grace_shorter_than_sleep_plus_drain() -> None:
    sleep = LIVE_READY + "lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n"
    found = findings("PRB016", deployment(sleep, pod="terminationGracePeriodSeconds: 10\n", service=True))
    assert len(found) == 1 and "15 s" in found[0].message
    assert found[0].location.line == 22  # type: ignore[union-attr]


def test_prb016_stated_drain_against_default_grace() -> None:
    ann = 'tcpdoctor.io/drain-seconds: "40"\n'
    found = findings("PRB016", deployment(LIVE_READY, service=True, annotations=ann))
    assert len(found) == 1 and "terminationGracePeriodSeconds 30" in found[0].message


def test_prb016_not_when_grace_is_enough() -> None:
    sleep = LIVE_READY + "lifecycle:\n  preStop:\n    sleep: {seconds: 5}\n"
    assert findings("PRB016", deployment(sleep, service=True)) == []  # default 30 >= 5 + 10


# -- PRB017 ------------------------------------------------------------------------------


def test_prb017_long_readiness_delay() -> None:
    found = findings(
        "PRB017",
        deployment("readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  initialDelaySeconds: 90\n"),
    )
    assert lines(found) == [17]


def test_prb017_not_with_startup_probe_or_short_delay() -> None:
    base = "readinessProbe:\n  httpGet: {path: /readyz, port: http}\n  initialDelaySeconds: 90\n"
    assert findings("PRB017", deployment(base + "startupProbe:\n  tcpSocket: {port: http}\n")) == []
    assert findings("PRB017", deployment(base.replace("90", "30"))) == []
