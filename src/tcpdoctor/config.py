"""`.tcpdoctor.toml`: found upward from the scanned path, like ruff's and git's config files.

    select = ["PRB", "SRV", "XL"]          # rule IDs or prefixes; default: all
    ignore = ["PRB001"]
    fail-on = "warning"                    # the default of --fail-on

    [severity]                              # per-rule severity overrides
    PRB002 = "error"

    [per-path-ignores]                      # glob (relative to the config file) -> IDs
    "legacy/**" = ["PRB"]

    [[match]]                               # cross-layer matching the scan cannot infer
    workload = "Deployment/api"             # kind/name (namespace optional: ns/kind/name)
    container = "app"
    go = "cmd/api"                          # directory of the Go main package

Other sections belong to the subsystems that read them ([node], [pcap], ...): a
subsystem looks up ``Config.section(name)``.
"""

from __future__ import annotations

import fnmatch
import tomllib
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import Any

from tcpdoctor.model import InputError, Severity

CONFIG_NAME = ".tcpdoctor.toml"


@dataclass
class Config:
    path: Path | None = None
    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    fail_on: str | None = None
    severity: dict[str, Severity] = field(default_factory=dict)
    per_path_ignores: dict[str, list[str]] = field(default_factory=dict)
    matches: list[dict[str, str]] = field(default_factory=list)
    raw: dict[str, Any] = field(default_factory=dict)

    @property
    def root(self) -> Path | None:
        return self.path.parent if self.path else None

    def section(self, name: str) -> dict[str, Any]:
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}

    def ignored_for_path(self, path: str) -> list[str]:
        """IDs ignored for ``path`` by ``[per-path-ignores]`` globs (relative to the config's folder)."""
        if not self.per_path_ignores:
            return []
        rel = _relative(path, self.root)
        ids: list[str] = []
        for pattern, rule_ids in self.per_path_ignores.items():
            if _glob_match(rel, pattern):
                ids.extend(rule_ids)
        return ids


def _relative(path: str, root: Path | None) -> str:
    p = Path(path)
    if root is not None:
        try:
            return PurePosixPath(p.resolve().relative_to(root.resolve())).as_posix()
        except ValueError:
            pass
    return PurePosixPath(p).as_posix()


def _glob_match(rel: str, pattern: str) -> bool:
    pattern = pattern.rstrip("/")
    if fnmatch.fnmatch(rel, pattern):
        return True
    # "dir/**" and a bare directory name both cover everything below it
    base = pattern[:-3] if pattern.endswith("/**") else pattern
    return rel == base or rel.startswith(base + "/")


def find_config(start: Path) -> Path | None:
    """The nearest `.tcpdoctor.toml` in ``start`` or one of its parents."""
    here = start.resolve()
    if here.is_file():
        here = here.parent
    for folder in (here, *here.parents):
        candidate = folder / CONFIG_NAME
        if candidate.is_file():
            return candidate
    return None


def _string_list(data: dict[str, Any], key: str, path: Path) -> list[str]:
    value = data.get(key, [])
    if isinstance(value, str):
        value = [v.strip() for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise InputError(f"{path}: '{key}' must be a list of rule IDs")
    return [v.strip().upper() for v in value if v.strip()]


def load_config(path: Path) -> Config:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except tomllib.TOMLDecodeError as exc:
        raise InputError(f"{path}: {exc}") from None
    except OSError as exc:
        raise InputError(f"{path}: {exc.strerror}") from None
    cfg = Config(path=path, raw=data)
    cfg.select = _string_list(data, "select", path)
    cfg.ignore = _string_list(data, "ignore", path)
    fail_on = data.get("fail-on", data.get("fail_on"))
    if fail_on is not None:
        if fail_on not in ("error", "warning", "info", "never"):
            raise InputError(f"{path}: fail-on must be error, warning, info or never, not {fail_on!r}")
        cfg.fail_on = fail_on
    for rule_id, sev in dict(data.get("severity", {})).items():
        try:
            cfg.severity[rule_id.upper()] = Severity.parse(str(sev))
        except ValueError as exc:
            raise InputError(f"{path}: [severity] {rule_id}: {exc}") from None
    ppi = data.get("per-path-ignores", data.get("per_path_ignores", {}))
    if not isinstance(ppi, dict):
        raise InputError(f"{path}: [per-path-ignores] must be a table of glob = [IDs]")
    cfg.per_path_ignores = {k: _string_list(ppi, k, path) for k in ppi}
    matches = data.get("match", [])
    if not isinstance(matches, list) or not all(isinstance(m, dict) for m in matches):
        raise InputError(f"{path}: [[match]] must be an array of tables")
    cfg.matches = [{str(k): str(v) for k, v in m.items()} for m in matches]
    return cfg


def config_for(paths: list[Path], explicit: Path | None = None) -> Config:
    """The config given with --config, else the one found upward from the first path, else defaults."""
    if explicit is not None:
        return load_config(explicit)
    for p in paths:
        found = find_config(p)
        if found:
            return load_config(found)
    return Config()
