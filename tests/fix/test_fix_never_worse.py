"""`tcpdoctor fix` never makes a file worse: no finding (rule, object) appears that the file did not have,
PRB004 gets its own fix, and with the service's Go source the grace period covers the Shutdown timeout."""

from __future__ import annotations

import json
import shutil
import textwrap
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tcpdoctor.cli import app
from tcpdoctor.commands.fix import go_evidence
from tcpdoctor.config import Config
from tcpdoctor.fix import FixContext, all_findings, fix_text
from tcpdoctor.policy import Policy
from tcpdoctor.sources.files import walk

EXAMPLE = Path(__file__).resolve().parents[2] / "examples" / "livefeed"


def keys(text: str, path: str = "deploy/api.yaml", ctx: FixContext | None = None) -> set[tuple[str, str]]:
    return {(f.rule, str(f.subject)) for f in all_findings(text, path, Policy(), ctx)}


def deployment(live: str, ready: str, *, service: bool, pre_stop: bool = True) -> str:
    probes = textwrap.indent(
        "livenessProbe:\n"
        + textwrap.indent(live.strip("\n"), "  ")
        + "\nreadinessProbe:\n"
        + textwrap.indent(ready.strip("\n"), "  ")
        + ("\nlifecycle:\n  preStop:\n    sleep: {seconds: 5}\n" if pre_stop else "\n"),
        " " * 10,
    )
    text = (
        "apiVersion: apps/v1\nkind: Deployment\nmetadata:\n  name: api\n  namespace: shop\nspec:\n"
        "  selector:\n    matchLabels: {app: api}\n  template:\n    metadata:\n      labels: {app: api}\n"
        "    spec:\n      containers:\n        - name: app\n          image: ghcr.io/acme/api:1\n"
        "          ports:\n            - name: http\n              containerPort: 8080\n" + probes
    )
    if service:
        text += (
            "---\napiVersion: v1\nkind: Service\nmetadata:\n  name: api\n  namespace: shop\n"
            "spec:\n  selector: {app: api}\n  ports:\n    - port: 80\n      targetPort: http\n"
        )
    return text


# liveness checks every 2 s with a 5 s timeout (PRB011: the real period is 5 s); readiness is the same
# check at the 5 s period: raising liveness's period to 5 makes the two probes identical (PRB003)
SHORT_PERIOD = "tcpSocket: {port: http}\nperiodSeconds: 2\ntimeoutSeconds: 5\n"
SAME_AT_FIVE = "tcpSocket: {port: http}\nperiodSeconds: 5\ntimeoutSeconds: 5\n"


def test_a_fix_that_would_make_liveness_identical_to_readiness_is_left_out_and_said_so() -> None:
    text = deployment(SHORT_PERIOD, SAME_AT_FIVE, service=False)
    assert "PRB011" in {rule for rule, _ in keys(text)} and "PRB003" not in {rule for rule, _ in keys(text)}
    result = fix_text(text, "deploy/api.yaml")
    assert result.fixed == text and result.applied == []
    (why,) = result.skipped
    assert why.startswith(
        "PRB011 not fixed (shop/Deployment/api container app): the fix would bring up PRB003"
    )
    assert "liveness and readiness probes are identical" in why


def test_behind_a_service_prb004_moves_liveness_away_and_both_fixes_stay() -> None:
    """The close case: with a Service, PRB004 fires too; its fix gives liveness a longer window, so the
    PRB011 fix no longer leaves two identical probes and nothing has to be left out."""
    text = deployment(SHORT_PERIOD, SAME_AT_FIVE, service=True)
    result = fix_text(text, "deploy/api.yaml")
    assert result.skipped == []
    assert [a.rule for a in result.applied] == ["PRB011", "PRB004"]
    assert (
        "periodSeconds: 5\n            timeoutSeconds: 5\n            failureThreshold: 6\n" in result.fixed
    )
    after = keys(result.fixed)
    assert after <= keys(text) and not {r for r, _ in after} & {"PRB003", "PRB004", "PRB011"}


def test_prb004_raises_liveness_above_twice_the_readiness_window() -> None:
    live = "httpGet: {path: /livez, port: http}\nfailureThreshold: 3\n"
    ready = "httpGet: {path: /readyz, port: http}\nfailureThreshold: 4\n"
    text = deployment(live, ready, service=True)
    result = fix_text(text, "deploy/api.yaml", Policy(select=["PRB004"]))
    (applied,) = result.applied
    # readiness gives up after 4 x 10 s = 40 s, liveness after 3 x 10 s; twice 40 s is 8 x 10 s
    assert applied.description.startswith("raise livenessProbe failureThreshold to 8 (8 x 10 s = 80 s")
    assert "failureThreshold: 8\n          readinessProbe" in result.fixed
    assert "PRB004" not in {r for r, _ in keys(result.fixed)}
    # close cases: liveness already slower (5 x 10 s = 50 s > 40 s), or no Service (readiness decides nothing)
    slower = deployment(live.replace("3", "5"), ready, service=True)
    assert fix_text(slower, "deploy/api.yaml").applied == []
    alone = fix_text(deployment(live, ready, service=False), "deploy/api.yaml", Policy(select=["PRB004"]))
    assert alone.applied == []


def test_prb004_on_the_same_check_says_what_the_threshold_does_not_fix() -> None:
    check = "httpGet: {path: /healthz, port: http}\n"
    text = deployment(check + "failureThreshold: 2\n", check, service=True)
    result = fix_text(text, "deploy/api.yaml", Policy(select=["PRB004"]))
    (applied,) = result.applied
    assert "failureThreshold to 6" in applied.description
    assert "liveness still runs readiness's check" in applied.description


# --- the example: livefeed, with and without its Go source ---------------------------------------------


def test_example_manifest_alone_gets_no_new_finding() -> None:
    text = (EXAMPLE / "deploy" / "livefeed.yaml").read_text()
    result = fix_text(text, "livefeed.yaml")
    before, after = keys(text, "livefeed.yaml"), keys(result.fixed, "livefeed.yaml")
    assert after <= before and result.skipped == []
    assert "PRB003" not in {r for r, _ in after}
    assert not {r for r, _ in after} & {"PRB004", "PRB007", "PRB015", "PRB016"}
    # without Go: the grace period covers the preStop sleep and a typical drain (today's behaviour)
    (grace,) = [a for a in result.applied if a.rule == "PRB016"]
    assert grace.description == (
        "set terminationGracePeriodSeconds to 20 (preStop sleep 5 s + a typical drain of 10 s + 5 s margin)"
    )


@pytest.fixture(scope="module")
def go_ctx() -> FixContext:
    program, _ = go_evidence([EXAMPLE], walk([EXAMPLE]), Config())
    assert program is not None and program.shutdowns
    return FixContext(go=program)


def test_example_with_go_sizes_grace_from_the_shutdown_timeout(go_ctx: FixContext) -> None:
    text = (EXAMPLE / "deploy" / "livefeed.yaml").read_text()
    path = str(EXAMPLE / "deploy" / "livefeed.yaml")
    before = keys(text, path, go_ctx)
    assert "XL004" in {r for r, _ in before}
    result = fix_text(text, path, ctx=go_ctx)
    (grace,) = [a for a in result.applied if a.rule in ("XL004", "PRB016")]
    # main.go: srv.Shutdown with context.WithTimeout(..., 30*time.Second); the fix adds a 5 s preStop sleep
    assert "terminationGracePeriodSeconds: 40\n" in result.fixed
    assert "preStop sleep 5 s + Shutdown timeout 30 s at " in grace.description
    assert "main.go:64" in grace.description
    after = keys(result.fixed, path, go_ctx)
    assert after <= before and not {r for r, _ in after} & {"XL004", "XL005", "PRB016", "PRB003"}


def test_cli_fix_then_scan_of_the_example_has_no_new_finding(tmp_path: Path) -> None:
    """What the review did: `fix --write` on a copy of the example, then `scan` it again."""
    copy = tmp_path / "livefeed"
    shutil.copytree(EXAMPLE, copy, ignore=shutil.ignore_patterns("capture"))
    runner = CliRunner()

    def scan() -> set[tuple[str, str]]:
        out = runner.invoke(app, ["scan", str(copy), "--format", "json", "--fail-on", "never"])
        assert out.exit_code == 0, out.output
        return {
            (f["rule"], json.dumps(f["subject"], sort_keys=True)) for f in json.loads(out.stdout)["findings"]
        }

    before = scan()
    fixed = runner.invoke(app, ["fix", "--write", str(copy)])
    assert fixed.exit_code == 0, fixed.output
    assert "Shutdown timeout 30 s at " in fixed.stderr and "not fixed" not in fixed.stderr
    after = scan()
    assert after <= before, sorted(after - before)
    gone = {r for r, _ in before - after}
    assert {"PRB004", "PRB007", "XL004", "XL005"} <= gone
    assert (copy / "deploy" / "livefeed.yaml").read_text().count("terminationGracePeriodSeconds: 40\n") == 1


def test_cli_says_which_fix_it_left_out_and_why(tmp_path: Path) -> None:
    manifest = tmp_path / "api.yaml"
    manifest.write_text(deployment(SHORT_PERIOD, SAME_AT_FIVE, service=False))
    before = manifest.read_bytes()
    result = CliRunner().invoke(app, ["fix", "--write", str(manifest)])
    assert result.exit_code == 0 and result.stdout == ""
    assert manifest.read_bytes() == before
    line = next(ln for ln in result.stderr.splitlines() if "not fixed" in ln)
    assert line.startswith(f"{manifest}: PRB011 not fixed (shop/Deployment/api container app)")
    assert "PRB003" in line


GO_SERVER = """\
package main

import (
	"context"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"
)

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	srv := &http.Server{Addr: ":8080", ReadHeaderTimeout: 5 * time.Second, IdleTimeout: time.Minute}
	go srv.ListenAndServe()
	<-ctx.Done()
	SHUTDOWN
	os.Exit(0)
}
"""


@pytest.mark.parametrize(
    ("shutdown", "grace"),
    [
        # 5 s preStop sleep (added by the PRB015/XL005 fix) + 45 s Shutdown timeout + 5 s margin
        (
            "sctx, cancel := context.WithTimeout(context.Background(), 45*time.Second)\n\tdefer cancel()\n\t"
            "srv.Shutdown(sctx)",
            55,
        ),
        # no deadline on Shutdown's context: nothing to size from, the manifest's own sizing stays
        ("srv.Shutdown(context.Background())", 20),
    ],
)
def test_go_shutdown_timeout_sizes_the_grace_period_only_when_known(
    tmp_path: Path, shutdown: str, grace: int
) -> None:
    (tmp_path / "main.go").write_text(GO_SERVER.replace("SHUTDOWN", shutdown))
    (tmp_path / "go.mod").write_text("module example.com/api\n\ngo 1.22\n")
    text = deployment(
        "httpGet: {path: /livez, port: http}\nfailureThreshold: 6\n",
        "httpGet: {path: /readyz, port: http}\n",
        service=True,
        pre_stop=False,
    )
    text = text.replace(
        "    spec:\n      containers:",
        "    spec:\n      terminationGracePeriodSeconds: 10\n      containers:",
    )
    program, _ = go_evidence([tmp_path], walk([tmp_path]), Config())
    assert program is not None and program.shutdowns
    result = fix_text(text, str(tmp_path / "api.yaml"), ctx=FixContext(go=program))
    assert f"terminationGracePeriodSeconds: {grace}\n" in result.fixed, result.applied
    (sized,) = [a for a in result.applied if a.rule in ("PRB016", "XL004")]
    assert ("Shutdown timeout 45 s at " in sized.description) == (grace == 55)
    # a grace period that already covers the drain is left alone
    covered = text.replace(
        "terminationGracePeriodSeconds: 10", f"terminationGracePeriodSeconds: {grace + 10}"
    )
    again = fix_text(covered, str(tmp_path / "api.yaml"), ctx=FixContext(go=program))
    assert not [a for a in again.applied if a.rule in ("PRB016", "XL004")]
