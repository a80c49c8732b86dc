"""The mechanical fixes, one function per rule, each editing the round-trip node a finding is about.

A fixer never decides *whether* something is wrong: the PRB rules did, and their finding
is its input. It only knows how to make that finding go away in the manifest, with the
smallest edit that keeps the author's layout (keys are changed in place, new keys go
next to their siblings).
"""

from __future__ import annotations

import copy
import math
import re
from collections.abc import Callable, MutableMapping
from dataclasses import dataclass
from typing import Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq

from tcpdoctor.config import Config
from tcpdoctor.evidence.golang import GoProgram
from tcpdoctor.evidence.manifests import PROBE_DEFAULTS, Container, Probe
from tcpdoctor.fix.locate import PROBE_KEYS, Target, find_container, find_object, pod_spec
from tcpdoctor.model import Finding
from tcpdoctor.rules import _matching as matching
from tcpdoctor.rules import _probe_facts as facts

# PRB015: how long the preStop hook keeps the server serving while the endpoint removal spreads
# (EndpointSlice controller -> kube-proxy / ingress controllers on every node): a few seconds in a
# healthy cluster; 5 s is what PRB015 advises (raise it where propagation is measured slower).
PRESTOP_SLEEP_SECONDS = 5
# lifecycle.preStop.sleep: KEP-3960 "PodLifecycleSleepAction", alpha 1.29, beta (on by default) 1.30,
# GA 1.34. Older clusters reject the field, so there the fix is an exec `sleep` (needs the binary).
SLEEP_ACTION_VERSION = (1, 30)


@dataclass
class FixContext:
    """What a fixer may read besides its finding: the cluster version the fix must be valid for, and
    the Go source scanned with the manifests (``tcpdoctor scan``'s Go collector) when there is any."""

    kubernetes_version: tuple[int, int] = SLEEP_ACTION_VERSION
    go: GoProgram | None = None
    config: Config | None = None  # its [[match]] table joins containers to Go servers


@dataclass
class Edit:
    """A fixer's handle on one container of a round-trip document."""

    pod_spec: MutableMapping[str, Any]
    container: MutableMapping[str, Any] | None


Fixer = Callable[[Finding, Target, Edit, FixContext], str | None]
FIXERS: dict[str, Fixer] = {}


def fixer(rule_id: str) -> Callable[[Fixer], Fixer]:
    def register(fn: Fixer) -> Fixer:
        FIXERS[rule_id] = fn
        return fn

    return register


def edit_for(data: Any, target: Target) -> Edit | None:
    obj = find_object(data, target.workload)
    spec = pod_spec(obj) if obj is not None else None
    if spec is None:
        return None
    container = find_container(spec, target.container.name) if target.container is not None else None
    return Edit(spec, container)


# --- editing helpers ----------------------------------------------------------------------------------------


def _deepest_last(node: Any, key: Any) -> tuple[Any, Any]:
    """The innermost (collection, key or index) whose line ends the text of ``node[key]``."""
    value = node[key]
    while isinstance(value, CommentedMap | CommentedSeq) and len(value) and not value.fa.flow_style():
        node, key = value, (list(value.keys())[-1] if isinstance(value, CommentedMap) else len(value) - 1)
        value = node[key]
    return node, key


def _post_comment_slot(node: Any) -> int:
    return 2 if isinstance(node, CommentedMap) else 0  # where ruamel keeps the comment after a value


def _move_trailing_comment(mapping: CommentedMap, before: str, inserted: str) -> None:
    """Comment lines after the value of ``before`` belong to what followed it: move them below ``inserted``.

    ruamel attaches a comment block that precedes a key to the end of the previous value (its
    deepest last scalar). A key inserted after that value would land *below* the block, so the
    comment would describe the new key; the block is moved to the end of the new value instead,
    the previous line's own end-of-line comment staying where it is.
    """
    holder, slot_key = _deepest_last(mapping, before)
    entry = holder.ca.items.get(slot_key)
    slot = _post_comment_slot(holder)
    token = entry[slot] if entry and len(entry) > slot else None
    if token is None or not isinstance(getattr(token, "value", None), str):
        return
    text: str = token.value
    inline = text[: text.index("\n") + 1] if text.startswith("#") and "\n" in text else ""
    rest = text[len(inline) :] if inline else text[1:] if text.startswith("\n") else ""
    if not rest:
        return
    if inline:
        token.value = inline
    else:
        entry[slot] = None
    new_holder, new_key = _deepest_last(mapping, inserted)
    new_slot = _post_comment_slot(new_holder)
    new_entry = new_holder.ca.items.setdefault(new_key, [None, None, None, None])
    moved = copy.copy(token)
    moved.value = "\n" + rest
    new_entry[new_slot] = moved


def _insert(mapping: MutableMapping[str, Any], position: int, key: str, value: Any) -> None:
    if not isinstance(mapping, CommentedMap):
        mapping[key] = value
        return
    keys = list(mapping.keys())
    mapping.insert(position, key, value)
    if position > 0:
        _move_trailing_comment(mapping, keys[position - 1], key)


def replace_key(mapping: MutableMapping[str, Any], old: str, new: str, value: Any) -> None:
    """Put ``new: value`` where ``old`` was; the comment lines after the old value follow the new one."""
    keys = list(mapping.keys())
    position = keys.index(old)
    if not isinstance(mapping, CommentedMap):
        del mapping[old]
        mapping[new] = value
        return
    holder, slot_key = _deepest_last(mapping, old)
    entry = holder.ca.items.get(slot_key)
    slot = _post_comment_slot(holder)
    token: Any = entry[slot] if entry and len(entry) > slot else None
    inner = _comment_lines(mapping[old], exclude=token)
    text = getattr(token, "value", None)
    if isinstance(text, str) and text.startswith("#"):
        # the end-of-line comment of the removed value's last line described it: it goes above the new key
        # too (left at its old column it would trail the new value's line); the comment lines after stay
        inline, _, rest = text.partition("\n")
        inner.append(inline[1:].strip())
        if rest.strip():
            token = copy.copy(token)
            token.value = "\n" + rest
        else:
            token = None
    _without_comments(mapping[old])  # an alias of the same node (YAML anchor) must not repeat them
    del mapping[old]
    mapping.insert(position, new, value)
    if token is not None:
        new_holder, new_key = _deepest_last(mapping, new)
        slots = new_holder.ca.items.setdefault(new_key, [None, None, None, None])
        slots[_post_comment_slot(new_holder)] = token
    if inner:  # the comments written inside the replaced value go above the new key
        column = mapping.lc.data[keys[position]][1] if keys[position] in mapping.lc.data else 0
        mapping.yaml_set_comment_before_after_key(new, before="\n".join(inner), indent=column)


def _tokens(obj: Any) -> list[Any]:
    if obj is None:
        return []
    if isinstance(obj, list):
        return [t for item in obj for t in _tokens(item)]
    return [obj] if isinstance(getattr(obj, "value", None), str) else []


def _comment_lines(value: Any, exclude: Any = None) -> list[str]:
    """The text of every comment inside a round-trip value (without the ``#``), in document order."""
    found: list[tuple[int, int, str]] = []
    seen: set[int] = set()  # ruamel may hang one token on a key and on its value

    def walk(node: Any) -> None:
        if not isinstance(node, CommentedMap | CommentedSeq):
            return
        tokens = _tokens(node.ca.comment) + [t for entry in node.ca.items.values() for t in _tokens(entry)]
        for token in tokens:
            if token is exclude or id(token) in seen:
                continue
            seen.add(id(token))
            line0 = token.start_mark.line if token.start_mark is not None else 0
            for offset, line in enumerate(token.value.splitlines()):
                if line.strip().startswith("#"):
                    found.append((line0, offset, line.strip()[1:].strip()))
        for child in node.values() if isinstance(node, CommentedMap) else node:
            walk(child)

    walk(value)
    return [text for _, _, text in sorted(found)]


def insert_after(mapping: MutableMapping[str, Any], anchors: tuple[str, ...], key: str, value: Any) -> None:
    """Add ``key`` right after the last of ``anchors`` present (else at the end), keeping the others' order."""
    keys = list(mapping.keys())
    present = [keys.index(a) for a in anchors if a in mapping]
    _insert(mapping, max(present) + 1 if present else len(keys), key, value)


def insert_before(mapping: MutableMapping[str, Any], anchor: str, key: str, value: Any) -> None:
    keys = list(mapping.keys())
    _insert(mapping, keys.index(anchor) if anchor in keys else len(keys), key, value)


def set_value(mapping: MutableMapping[str, Any], key: str, value: Any, after: tuple[str, ...] = ()) -> None:
    """Set a field: in place when it exists (its comment stays), else next to ``after``."""
    if key in mapping:
        mapping[key] = value
    else:
        insert_after(mapping, after, key, value)


def block(**fields: Any) -> CommentedMap:
    out = CommentedMap()
    for k, v in fields.items():
        out[k] = v
    return out


def probe_node(edit: Edit, probe: Probe | None) -> MutableMapping[str, Any] | None:
    if edit.container is None or probe is None:
        return None
    node = edit.container.get(PROBE_KEYS[probe.kind])
    return node if isinstance(node, MutableMapping) else None


HANDLER_KEYS = ("httpGet", "tcpSocket", "grpc", "exec")
TIMING_KEYS = (
    "initialDelaySeconds",
    "periodSeconds",
    "timeoutSeconds",
    "successThreshold",
    "failureThreshold",
)


# --- the fixers --------------------------------------------------------------------------------------------


def _without_comments(node: Any) -> Any:
    """A copy's comments would repeat the original's: the copy gets none."""
    if isinstance(node, CommentedMap | CommentedSeq):
        node.ca.comment = None
        node.ca.items.clear()
        for child in node.values() if isinstance(node, CommentedMap) else node:
            _without_comments(child)
    return node


def _copy_handler(node: MutableMapping[str, Any]) -> tuple[str, Any] | None:
    for key in HANDLER_KEYS:
        if key in node:
            return key, _without_comments(copy.deepcopy(node[key]))
    return None


# PRB005's own advice: a new startupProbe checks every 10 s and allows 1.5x the stated start-up
STARTUP_PERIOD_SECONDS = 10
STARTUP_MARGIN = 1.5


def startup_threshold(period: int, startup_seconds: float, protected_budget: int) -> int:
    """failureThreshold so that the window covers 1.5x the start-up and at least what liveness alone allowed."""
    return max(math.ceil(startup_seconds * STARTUP_MARGIN / period), math.ceil(protected_budget / period), 1)


def startup_probe_for(
    liveness: Probe, liveness_node: MutableMapping[str, Any], startup_seconds: float
) -> Any:
    """A startupProbe asking what liveness asks, patient enough for the stated start-up."""
    handler = _copy_handler(liveness_node)
    if handler is None:
        return None
    period = STARTUP_PERIOD_SECONDS
    probe = block(**{handler[0]: handler[1]})
    probe["periodSeconds"] = period
    if liveness.timeout_seconds != PROBE_DEFAULTS["timeoutSeconds"]:
        probe["timeoutSeconds"] = liveness.timeout_seconds
    probe["failureThreshold"] = startup_threshold(period, startup_seconds, facts.startup_budget(liveness))
    return probe


def _startup_seconds(target: Target) -> float | None:
    """The start-up time PRB005 reasoned from: the workload's ``tcpdoctor.io/startup-seconds``."""
    return facts.seconds_annotation(target.workload, facts.STARTUP_ANNOTATION)


@fixer("PRB005")
def add_startup_probe(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    if edit.container is None or target.container is None:
        return None
    liveness = target.container.probe("liveness")
    startup = target.container.probe("startup")
    seconds = _startup_seconds(target) or 0.0
    if startup is not None:  # widen the existing one
        node = probe_node(edit, startup)
        if node is None:
            return None
        protected = facts.startup_budget(liveness) if liveness is not None else 0
        needed = startup_threshold(startup.period_seconds, seconds, protected - startup.initial_delay_seconds)
        if needed <= startup.failure_threshold:
            return None
        set_value(node, "failureThreshold", needed, after=TIMING_KEYS)
        return f"raise startupProbe failureThreshold to {needed} ({needed * startup.period_seconds} s)"
    liveness_node = probe_node(edit, liveness)
    if liveness is None or liveness_node is None or not seconds:
        return None
    probe = startup_probe_for(liveness, liveness_node, seconds)
    if probe is None:
        return None
    insert_after(edit.container, tuple(PROBE_KEYS.values()), "startupProbe", probe)
    window = probe["failureThreshold"] * probe["periodSeconds"]
    return (
        f"add a startupProbe with the liveness check and a {window} s window for the {seconds:g} s start-up"
    )


# PRB004's advice: liveness gives up only after twice the time readiness takes to pull the pod out of
# rotation, so a struggling pod has as long again, without traffic, to recover before it is restarted
LIVENESS_OVER_READINESS = 2


def liveness_threshold(live: Probe, ready: Probe | None, at_least: int) -> int:
    """The smallest liveness failureThreshold >= ``at_least`` whose window is at least twice readiness's.

    Strictly longer than readiness's window (PRB004), hence never the same thresholds as readiness
    (PRB003) either.
    """
    if ready is None or ready.handler == "none":
        return at_least
    needed = math.ceil(LIVENESS_OVER_READINESS * facts.failure_window(ready) / live.period_seconds)
    return max(at_least, needed, facts.failure_window(ready) // live.period_seconds + 1)


def _set_liveness_threshold(
    target: Target, edit: Edit, at_least: int
) -> tuple[Probe, Probe | None, int] | None:
    live = target.container.probe("liveness") if target.container else None
    node = probe_node(edit, live)
    if live is None or node is None or target.container is None:
        return None
    ready = target.container.probe("readiness")
    value = liveness_threshold(live, ready, at_least)
    if value == live.failure_threshold:
        return None
    set_value(node, "failureThreshold", value, after=TIMING_KEYS)
    return live, ready, value


def _window_text(live: Probe, ready: Probe | None, value: int) -> str:
    text = f"{value} x {live.period_seconds} s = {value * live.period_seconds} s"
    if ready is not None and ready.handler != "none":
        text += f", over readiness's {ready.failure_threshold} x {ready.period_seconds} s"
    return text


@fixer("PRB007")
def liveness_threshold_one(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    done = _set_liveness_threshold(target, edit, PROBE_DEFAULTS["failureThreshold"])
    if done is None:
        return None
    live, ready, value = done
    return f"set livenessProbe failureThreshold to {value} ({_window_text(live, ready, value)})"


@fixer("PRB004")
def liveness_slower_than_readiness(
    finding: Finding, target: Target, edit: Edit, ctx: FixContext
) -> str | None:
    live = target.container.probe("liveness") if target.container else None
    if live is None:
        return None
    done = _set_liveness_threshold(target, edit, live.failure_threshold + 1)
    if done is None:
        return None
    live, ready, value = done
    text = f"raise livenessProbe failureThreshold to {value} ({_window_text(live, ready, value)})"
    if ready is not None and live.same_check(ready):
        text += (
            f"; liveness still runs readiness's check ({live.describe()}): an outage longer than "
            f"{value * live.period_seconds} s still restarts every replica, point liveness at a process-only endpoint"
        )
    return text


DEV_TCP = re.compile(r"/dev/tcp/([^/\s]+)/(\d+)")
LOCAL_HOSTS = frozenset({"localhost", "127.0.0.1", "::1", "0.0.0.0"})


def _port_ref(container: Container | None, port: int) -> int | str:
    """A declared port's name when it has one (the probe then follows the port), else the number."""
    named = next((p.name for p in (container.ports if container else []) if p.container_port == port), None)
    return named or port


@fixer("PRB009")
def dev_tcp_to_tcp_socket(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    node = probe_node(edit, target.probe)
    if node is None or "exec" not in node or target.probe is None:
        return None
    match = DEV_TCP.search(" ".join(target.probe.command))
    if match is None or match.group(1) not in LOCAL_HOSTS:
        return None  # curl in a distroless image etc.: no mechanical replacement
    port = _port_ref(target.container, int(match.group(2)))
    replace_key(node, "exec", "tcpSocket", block(port=port))
    return f"replace the /dev/tcp exec probe with tcpSocket port {port}"


# PRB010: what each field becomes when the API server would reject or silently replace its value
VALID_VALUE = {
    "initialDelaySeconds": 0,
    "periodSeconds": PROBE_DEFAULTS["periodSeconds"],
    "timeoutSeconds": PROBE_DEFAULTS["timeoutSeconds"],
    "successThreshold": 1,  # must be 1 for liveness and startup
    "failureThreshold": PROBE_DEFAULTS["failureThreshold"],
}
MINIMUM = {"initialDelaySeconds": 0}  # every other field: >= 1


def valid_value(name: str, value: Any, kind: str) -> Any:
    """The value a probe field should hold instead of ``value`` (unchanged when it is valid)."""
    if isinstance(value, str) and value.strip().isdigit():
        value = int(value)  # "5" -> 5: what the author meant
    if not isinstance(value, int) or isinstance(value, bool) or value < MINIMUM.get(name, 1):
        return VALID_VALUE[name]
    if name == "successThreshold" and kind in ("liveness", "startup") and value != 1:
        return 1
    return value


@fixer("PRB010")
def invalid_probe_values(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    node = probe_node(edit, target.probe)
    if node is None or target.probe is None or target.field not in VALID_VALUE:
        return None  # a probe with no handler or two handlers: the author must choose
    name = target.field
    value = valid_value(name, node.get(name), target.probe.kind)
    if name not in node or node[name] == value:
        return None
    node[name] = value
    return f"set {target.probe.kind}Probe {name} to {value}"


@fixer("PRB011")
def period_not_below_timeout(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    node = probe_node(edit, target.probe)
    if node is None or target.probe is None:
        return None
    timeout = target.probe.timeout_seconds
    set_value(node, "periodSeconds", timeout, after=("initialDelaySeconds", *HANDLER_KEYS))
    return f"set {target.probe.kind}Probe periodSeconds to its timeoutSeconds {timeout} (the real period)"


def pre_stop_sleep(ctx: FixContext) -> CommentedMap:
    if ctx.kubernetes_version >= SLEEP_ACTION_VERSION:
        return block(preStop=block(sleep=block(seconds=PRESTOP_SLEEP_SECONDS)))
    command = CommentedSeq(["sleep", str(PRESTOP_SLEEP_SECONDS)])
    command.fa.set_flow_style()
    return block(preStop=block(exec=block(command=command)))


@fixer("PRB015")
@fixer("XL005")  # XL005 supersedes PRB015 when the Go server is known: the same fix
def add_pre_stop(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    if edit.container is None:
        return None
    lifecycle = edit.container.get("lifecycle")
    hook = pre_stop_sleep(ctx)
    if isinstance(lifecycle, MutableMapping):
        if "preStop" in lifecycle:
            return None  # an existing hook is the author's: not rewritten mechanically
        insert_before(lifecycle, "postStart", "preStop", hook["preStop"])
    else:
        insert_after(edit.container, (*PROBE_KEYS.values(), "resources", "env", "ports"), "lifecycle", hook)
    if ctx.kubernetes_version >= SLEEP_ACTION_VERSION:
        return (
            f"add lifecycle.preStop.sleep.seconds: {PRESTOP_SLEEP_SECONDS} "
            "(Kubernetes >= 1.30; on 1.29 it needs the PodLifecycleSleepAction feature gate)"
        )
    return f"add an exec preStop `sleep {PRESTOP_SLEEP_SECONDS}` (the image must have a sleep binary)"


GRACE_MARGIN_SECONDS = 5  # PRB016's advice: sleep + drain + 5 s


def _pre_stop_seconds(container: Container) -> float | None:
    """The container's preStop delay: 0 without a hook, None when its duration is unknown."""
    if container.pre_stop is None:
        return 0.0
    return container.pre_stop.sleep_seconds


def manifest_drain(target: Target) -> tuple[float, str]:
    """What PRB016 asks the grace period to cover: the longest preStop sleep of the pod plus its drain."""
    sleeps = [c.pre_stop.sleep_seconds or 0 for c in target.workload.containers if c.pre_stop is not None]
    stated = facts.seconds_annotation(target.workload, facts.DRAIN_ANNOTATION)
    sleep = max(sleeps, default=0)
    drain = stated if stated is not None else facts.TYPICAL_DRAIN_SECONDS
    drain_text = (
        f"{facts.DRAIN_ANNOTATION} {drain:g} s" if stated is not None else f"a typical drain of {drain:g} s"
    )
    return sleep + drain, (f"preStop sleep {sleep:g} s + " if sleep else "") + drain_text


def go_drain(target: Target, ctx: FixContext) -> tuple[float, str] | None:
    """What XL004 asks for, from the Go source: preStop sleep + a sleep before Shutdown + Shutdown's
    context timeout, for the Go server each container runs (the longest); None without Go evidence."""
    if ctx.go is None or target.manifests is None:
        return None
    joined = matching.match_workloads(target.manifests, ctx.go, ctx.config)
    best: tuple[float, str] | None = None
    for container in target.workload.containers:
        sleep = _pre_stop_seconds(container)
        if sleep is None:
            continue
        for match in joined.of(target.workload, container):
            for shutdown in match.server.shutdowns(ctx.go):
                timeout = shutdown.timeout.seconds if shutdown.timeout.is_set else None
                if timeout is None:
                    continue  # no deadline, or one the source does not tell: nothing to size from
                go_sleep = (shutdown.sleep_before.seconds or 0.0) if shutdown.sleep_before else 0.0
                where = shutdown.timeout.location or shutdown.location
                text = (
                    (f"preStop sleep {sleep:g} s + " if sleep else "")
                    + (f"a {go_sleep:g} s sleep before Shutdown + " if go_sleep else "")
                    + f"Shutdown timeout {timeout:g} s at {where.path}:{where.line}"
                )
                need = sleep + go_sleep + timeout
                if best is None or need > best[0]:
                    best = (need, text)
    return best


def required_grace_seconds(target: Target, ctx: FixContext | None = None) -> tuple[int, str]:
    """The grace period the pod needs and why: the longer of the manifest's drain (PRB016) and the Go
    server's (XL004, when the Go source was scanned), plus a margin."""
    need, why = manifest_drain(target)
    from_go = go_drain(target, ctx) if ctx is not None else None
    if from_go is not None and from_go[0] >= need:
        need, why = from_go
    return math.ceil(need) + GRACE_MARGIN_SECONDS, f"{why} + {GRACE_MARGIN_SECONDS} s margin"


@fixer("PRB016")
@fixer("XL004")
def grace_period(finding: Finding, target: Target, edit: Edit, ctx: FixContext) -> str | None:
    seconds, why = required_grace_seconds(target, ctx)
    if seconds <= target.workload.termination_grace_period_seconds:
        return None
    if "terminationGracePeriodSeconds" in edit.pod_spec:
        edit.pod_spec["terminationGracePeriodSeconds"] = seconds
    else:
        insert_before(edit.pod_spec, "containers", "terminationGracePeriodSeconds", seconds)
    return f"set terminationGracePeriodSeconds to {seconds} ({why})"
