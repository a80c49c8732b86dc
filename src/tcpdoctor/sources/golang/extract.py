"""One Go package (a directory) in, its evidence out: the unit of work of a worker process.

Files of a package are analysed together so that constants, flags and helper
functions declared in one file are seen from another. A package none of whose
files touches HTTP, gRPC or signals is only parsed (syntax errors counted,
``package main`` noted): the rules have nothing to read in it.
"""

from __future__ import annotations

import dataclasses
import re
from pathlib import Path

from tree_sitter import Tree

from tcpdoctor.evidence.golang import GoFile, GoProgram, GoValue, HttpServer, MainPackage
from tcpdoctor.model import Location
from tcpdoctor.sources.golang import parse, values
from tcpdoctor.sources.golang.clients import extract_package as extract_clients
from tcpdoctor.sources.golang.context import Binding, FileContext, PackageContext, build_file
from tcpdoctor.sources.golang.handlers import find_handlers, handler_key
from tcpdoctor.sources.golang.parse import arguments, call_parts, text
from tcpdoctor.sources.golang.routes import find_registrations
from tcpdoctor.sources.golang.servers import apply_assignments, find_servers, scan_calls

INTERESTING = (
    b'"net/http"',
    b"gin-gonic/gin",
    b"labstack/echo",
    b'"os/signal"',
    b"google.golang.org/grpc",
    b"golang.org/x/net/http2",
    b"go-chi/chi",
    b"gorilla/mux",
)
IGNORE_COMMENT = re.compile(rb"//\s*tcpdoctor:ignore[ \t]+([A-Za-z0-9, \t]+)")
RULE_TOKEN = re.compile(r"^[A-Z]{2,3}\d{0,3}$")
URL_LITERAL = re.compile(rb'"(https?://[^"\s]+)"')
MAIN_FUNC = re.compile(rb"^func main\(\)", re.MULTILINE)
PACKAGE_CLAUSE = re.compile(rb"^package\s+([A-Za-z_][A-Za-z0-9_]*)", re.MULTILINE)


def suppressions(source: bytes) -> dict[int, frozenset[str]]:
    """`//tcpdoctor:ignore SRV002,SSE003 reason` -> {line: {"SRV002", "SSE003"}}."""
    found: dict[int, frozenset[str]] = {}
    if b"tcpdoctor:ignore" not in source:
        return found
    for match in IGNORE_COMMENT.finditer(source):
        ids: list[str] = []
        for token in re.split(r"[,\s]+", match.group(1).decode().strip()):
            if RULE_TOKEN.match(token.upper()) and token.upper() == token:
                ids.append(token)
            elif token:
                break  # the reason starts
        if ids:
            line = source.count(b"\n", 0, match.start()) + 1
            found[line] = frozenset(ids)
    return found


def _urls(path: str, source: bytes) -> list[GoValue]:
    out: list[GoValue] = []
    if b"://" not in source:
        return out
    line, counted = 1, 0
    for match in URL_LITERAL.finditer(source):
        line += source.count(b"\n", counted, match.start())
        counted = match.start()
        line_start = source.rfind(b"\n", 0, match.start()) + 1
        if source[line_start : match.start()].lstrip().startswith(b"//"):
            continue  # in a comment
        loc = Location(path, line, match.start() - line_start + 1)
        url = match.group(1).decode("utf-8", "replace")
        out.append(GoValue("set", url, loc, f'"{url}"'))
    return out


def _flag_bindings(ctx: FileContext) -> None:
    """flag.DurationVar(&idle, "idle", 30*time.Second, "...") binds `idle` to its default."""
    for call in ctx.caps.get("call", []):
        operand, name, _ = call_parts(call)
        if not name.endswith("Var") or not ctx.is_pkg(operand, "flag"):
            continue
        args = arguments(call)
        if len(args) >= 3 and args[0].type == "unary_expression":
            target = args[0].child_by_field_name("operand")
            if target is not None and target.type == "identifier":
                ctx.package.bindings[text(target)] = Binding(args[2], ctx, "flag-default")


def analyse_package(directory: str, paths: list[str]) -> GoProgram:
    program = GoProgram()
    package = PackageContext(directory)
    parsed: list[tuple[str, bytes, GoFile, Tree]] = []
    interesting = False
    for path in paths:
        try:
            source = Path(path).read_bytes()
        except OSError:
            continue
        tree = parse.parse(source)
        errors, first = parse.count_errors(tree, source)
        pkg_match = PACKAGE_CLAUSE.search(source)
        gofile = GoFile(
            path=path,
            package=pkg_match.group(1).decode() if pkg_match else "",
            size_bytes=len(source),
            syntax_errors=errors,
            first_error=Location(path, first[0] + 1, first[1] + 1) if first else None,
            suppressions=suppressions(source),
        )
        main = MAIN_FUNC.search(source) if gofile.package == "main" else None
        if main is not None:
            gofile.has_main = True
            gofile.main_location = Location(path, source.count(b"\n", 0, main.start()) + 1, 1)
            program.main_packages.append(MainPackage(directory, gofile.main_location))
        program.files.append(gofile)
        interesting = interesting or any(marker in source for marker in INTERESTING)
        parsed.append((path, source, gofile, tree))
    if not interesting:
        if any(b"time." in source or b'":' in source for _, source, _, _ in parsed):
            light = PackageContext(directory)
            for path, source, _gofile, tree in parsed:
                build_file(path, source, tree, light, index=False)
            _export_constants(light, program)
        # URL literals of packages that make no requests themselves (a config package): the
        # clients extractor reads the string literals of the others from their trees
        for path, source, _gofile, _tree in parsed:
            program.url_strings.extend(_urls(path, source))
        return program
    contexts: list[FileContext] = []
    for path, source, _gofile, tree in parsed:
        contexts.append(build_file(path, source, tree, package))
    for ctx in contexts:
        _flag_bindings(ctx)
    servers: list[HttpServer] = []
    for ctx in contexts:
        servers.extend(find_servers(ctx, program))
    for ctx in contexts:
        apply_assignments(ctx, servers)
    for ctx in contexts:
        scan_calls(ctx, servers, program)
        find_handlers(ctx, program)
    for ctx in contexts:
        find_registrations(ctx, program)
    extract_clients(contexts, program)
    _export_constants(package, program)
    return program


def _export_constants(package: PackageContext, program: GoProgram) -> None:
    """Exported package-level durations and strings, for references from other packages."""
    found: dict[str, GoValue] = {}
    for name, binding in package.bindings.items():
        node = binding.node
        if node is None or not name[:1].isupper():
            continue
        raw = node.text or b""
        if b"time." not in raw and node.type not in ("interpreted_string_literal", "raw_string_literal"):
            continue
        value = values.go_value(binding.file, node, duration=b"time." in raw)
        if value.is_set:
            found[name] = GoValue("set", value.value, value.location, value.text, binding.origin)
    if found:
        program.constants[package.directory] = found


def merge(into: GoProgram, part: GoProgram) -> None:
    into.files.extend(part.files)
    into.servers.extend(part.servers)
    into.listen_calls.extend(part.listen_calls)
    into.registrations.extend(part.registrations)
    into.handlers.update(part.handlers)
    into.transports.extend(part.transports)
    into.clients.extend(part.clients)
    into.dialers.extend(part.dialers)
    into.requests.extend(part.requests)
    into.keepalives.extend(part.keepalives)
    into.grpc_dials.extend(part.grpc_dials)
    into.body_uses.extend(part.body_uses)
    into.shutdowns.extend(part.shutdowns)
    into.signals.extend(part.signals)
    into.url_strings.extend(part.url_strings)
    into.main_packages.extend(part.main_packages)
    into.constants.update(part.constants)


def _package_dir(program: GoProgram, import_path: str) -> str | None:
    """The scanned directory of an import path: the longest path suffix that matches one."""
    parts = import_path.split("/")
    for n in range(len(parts), 0, -1):
        suffix = "/".join(parts[-n:])
        hits = [d for d in program.constants if d == suffix or d.endswith("/" + suffix)]
        if len(hits) == 1:
            return hits[0]
        if len(hits) > 1:
            return None
    return None


def _resolve(program: GoProgram, value: GoValue) -> GoValue:
    if not value.is_unknown or not value.origin.startswith(values.PKGREF):
        return value
    import_path, _, name = value.origin[len(values.PKGREF) :].rpartition(":")
    directory = _package_dir(program, import_path)
    found = program.constants.get(directory, {}).get(name) if directory else None
    if found is None:
        return value
    return GoValue("set", found.value, found.location, value.text, found.origin)


def _resolve_all(program: GoProgram, obj: object, seen: set[int]) -> None:
    """Replace every cross-package GoValue reference inside an evidence record (recursively)."""
    if id(obj) in seen or not dataclasses.is_dataclass(obj) or isinstance(obj, type):
        return
    seen.add(id(obj))
    for f in dataclasses.fields(obj):
        current = getattr(obj, f.name)
        if isinstance(current, GoValue):
            resolved = _resolve(program, current)
            if resolved is not current:
                object.__setattr__(obj, f.name, resolved)
        elif isinstance(current, list):
            for item in current:
                _resolve_all(program, item, seen)
        elif dataclasses.is_dataclass(current):
            _resolve_all(program, current, seen)


def _resolve_references(program: GoProgram) -> None:
    if not program.constants:
        return
    seen: set[int] = set()
    records: list[object] = [
        *program.servers,
        *program.listen_calls,
        *program.handlers.values(),
        *program.transports,
        *program.clients,
        *program.dialers,
        *program.requests,
        *program.keepalives,
        *program.grpc_dials,
        *program.shutdowns,
    ]
    for record in records:
        _resolve_all(program, record, seen)
    for server in program.servers:
        if server.port is None:
            server.port = values.port_of(server.addr)
    for call in program.listen_calls:
        if call.port is None:
            call.port = values.port_of(call.addr)


def link(program: GoProgram) -> None:
    """Resolve what needs every package: values exported by another package of the tree
    (`config.IdleTimeout`), and registrations that name a handler of another package (`api.Health`)."""
    _resolve_references(program)
    by_name: dict[str, list[str]] = {}
    for key, handler in program.handlers.items():
        by_name.setdefault(handler.name, []).append(key)
    for reg in program.registrations:
        if reg.handler and reg.handler not in program.handlers:
            keys = by_name.get(reg.handler, [])
            reg.handler = keys[0] if len(keys) == 1 else None


__all__ = ["analyse_package", "handler_key", "link", "merge", "suppressions"]
