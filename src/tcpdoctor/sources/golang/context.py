"""What an extractor knows about one file and its package: imports, functions, definitions.

A Go package (one directory) is analysed in one worker, so a value may come from a
constant or a flag declared in another file of the same package.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass, field

from tree_sitter import Node, Tree

from tcpdoctor.model import Location
from tcpdoctor.sources.golang import parse
from tcpdoctor.sources.golang.parse import text


@dataclass
class FuncSpan:
    """A function declaration, method or closure, with its name as the Go compiler gives it."""

    node: Node
    name: str  # pkg.Func / pkg.Type.Method / pkg.Func.func1
    kind: str  # function | method | closure
    start: int
    end: int
    parent: FuncSpan | None = None
    receiver: str = ""  # receiver variable of a method (`s`)
    receiver_type: str = ""  # `Server` for func (s *Server)
    params: dict[str, str] = field(default_factory=dict)  # name -> type text
    _defs: dict[str, Node] | None = None

    @property
    def short(self) -> str:
        """The name inside the package: `Func`, `Type.Method`, `Func.func1`."""
        return self.name.split(".", 1)[1] if "." in self.name else self.name

    def param_of_type(self, *suffixes: str) -> str | None:
        for name, typ in self.params.items():
            if any(typ.endswith(s) for s in suffixes):
                return name
        return None

    def top(self) -> FuncSpan:
        span = self
        while span.parent is not None:
            span = span.parent
        return span


@dataclass
class Binding:
    """A package-level name: a const/var spec value, or a flag bound with flag.XxxVar."""

    node: Node | None
    file: FileContext
    origin: str = "const"


@dataclass
class PackageContext:
    directory: str
    name: str = ""
    bindings: dict[str, Binding] = field(default_factory=dict)
    funcs: dict[str, FuncSpan] = field(default_factory=dict)  # short name -> span (named ones)
    files: list[FileContext] = field(default_factory=list)


@dataclass
class FileContext:
    path: str
    source: bytes
    tree: Tree
    package: PackageContext
    imports: dict[str, str] = field(default_factory=dict)  # local name -> import path
    caps: dict[str, list[Node]] = field(default_factory=dict)
    funcs: list[FuncSpan] = field(default_factory=list)  # by start byte
    _starts: list[int] = field(default_factory=list)
    _capture_starts: dict[str, list[int]] = field(default_factory=dict)

    def starts_of(self, capture: str) -> list[int]:
        """Start bytes of a capture's nodes (they come in document order), for range look-ups."""
        found = self._capture_starts.get(capture)
        if found is None:
            found = [n.start_byte for n in self.caps.get(capture, [])]
            self._capture_starts[capture] = found
        return found

    # imports ----------------------------------------------------------------
    def alias_of(self, import_path: str) -> str | None:
        for local, path in self.imports.items():
            if path == import_path:
                return local
        return None

    def imports_like(self, fragment: str) -> bool:
        return any(fragment in p for p in self.imports.values())

    def is_pkg(self, operand: str, import_path: str) -> bool:
        """Is `operand` the local name of ``import_path`` (http for net/http, a renamed import ...)?"""
        return self.imports.get(operand) == import_path

    def pkg_of(self, operand: str) -> str | None:
        return self.imports.get(operand)

    # positions --------------------------------------------------------------
    def loc(self, node: Node) -> Location:
        return parse.location(self.path, node)

    def func_at(self, node: Node) -> FuncSpan | None:
        """The innermost function (declaration or closure) containing ``node``."""
        pos = node.start_byte
        i = bisect.bisect_right(self._starts, pos) - 1
        while i >= 0:
            span = self.funcs[i]
            if span.start <= pos < span.end and span.node.id != node.id:
                return span
            i -= 1
        return None

    def func_name_at(self, node: Node) -> str:
        span = self.func_at(node)
        return span.name if span else f"{self.package.name}.init"

    def span_of(self, func_node: Node) -> FuncSpan | None:
        i = bisect.bisect_left(self._starts, func_node.start_byte)
        while i < len(self.funcs) and self.funcs[i].start == func_node.start_byte:
            if self.funcs[i].node.id == func_node.id:
                return self.funcs[i]
            i += 1
        return None

    def in_loop(self, node: Node, within: FuncSpan | None = None) -> Node | None:
        """The innermost for statement around ``node`` (inside ``within``'s body when given)."""
        cur = node.parent
        while cur is not None:
            if cur.type == "for_statement":
                return cur
            if cur.type in parse.FUNC_TYPES and (within is None or cur.id == within.node.id):
                return None
            cur = cur.parent
        return None

    # definitions ------------------------------------------------------------
    def definitions(self, span: FuncSpan) -> dict[str, Node]:
        """name -> the expression first assigned to it in the function (its own body, not nested ones)."""
        if span._defs is not None:
            return span._defs
        defs: dict[str, Node] = {}
        body = span.node.child_by_field_name("body")
        if body is not None:
            for node in parse.captures(body, parse.DEFS_QUERY).get("def", []):
                _collect_def(node, defs)
        span._defs = defs
        return defs

    def param_source(self, name: str, at: Node) -> tuple[Node, FileContext] | None:
        return _param_source(self, name, at)

    def lookup(self, name: str, at: Node) -> tuple[Node | None, FileContext, str] | None:
        """Where ``name`` gets its value seen from ``at``: local (enclosing functions), then package."""
        span = self.func_at(at)
        while span is not None:
            found = self.definitions(span).get(name)
            if found is not None:
                return found, self, "var"
            if name in span.params:
                return None, self, "param"
            span = span.parent
        binding = self.package.bindings.get(name)
        if binding is not None:
            return binding.node, binding.file, binding.origin
        return None


def field_assignments(ctx: FileContext) -> Iterator[tuple[Node, str, str, Node | None]]:
    """Every ``x.F = v`` of the file (a field written after construction):
    (statement, operand text ``x``, field ``F``, the value node or None when the sides do not pair)."""
    for stmt in ctx.caps.get("field_assign", []):
        left = stmt.child_by_field_name("left")
        right = stmt.child_by_field_name("right")
        if left is None or right is None:
            continue
        rhs = right.named_children
        for i, lhs in enumerate(left.named_children):
            if lhs.type != "selector_expression":
                continue
            field = text(lhs.child_by_field_name("field"))
            operand = text(lhs.child_by_field_name("operand"))
            yield stmt, operand, field, rhs[i] if i < len(rhs) else None


def _param_source(ctx: FileContext, name: str, at: Node) -> tuple[Node, FileContext] | None:
    """The argument given for parameter ``name`` at the call sites of its function, when every
    call site of the package passes the same expression (``eventsHandler(hub, *heartbeat)``)."""
    span = ctx.func_at(at)
    while span is not None and name not in span.params:
        if name in ctx.definitions(span):
            return None
        span = span.parent
    if span is None or span.kind == "closure" or any(t.startswith("...") for t in span.params.values()):
        return None
    index = list(span.params).index(name)
    callee = span.short.rsplit(".", 1)[-1]
    found: list[tuple[Node, FileContext]] = []
    for f in ctx.package.files:
        for call in f.caps.get("call", []):
            operand, called, _ = parse.call_parts(call)
            if called != callee or bool(operand) != (span.kind == "method"):
                continue
            args = parse.arguments(call)
            if len(args) == len(span.params):
                found.append((args[index], f))
    if not found or len({text(n) for n, _ in found}) != 1:
        return None
    return found[0]


def _collect_def(node: Node, defs: dict[str, Node]) -> None:
    if node.type == "var_spec":
        names = node.children_by_field_name("name")
        value = node.child_by_field_name("value")
        values = value.named_children if value is not None else []
        for i, n in enumerate(names):
            if i < len(values):
                defs.setdefault(text(n), values[i])
            elif len(values) == 1:
                defs.setdefault(text(n), values[0])
        return
    left = node.child_by_field_name("left")
    right = node.child_by_field_name("right")
    if left is None or right is None:
        return
    lhs = left.named_children
    rhs = right.named_children
    if node.type == "assignment_statement":
        op = node.child_by_field_name("operator")
        if op is not None and text(op) != "=":
            return
    for i, n in enumerate(lhs):
        if n.type != "identifier" or text(n) == "_":
            continue
        if len(rhs) == len(lhs):
            defs.setdefault(text(n), rhs[i])
        elif len(rhs) == 1 and i == 0:
            defs.setdefault(text(n), rhs[0])


def build_file(
    path: str, source: bytes, tree: Tree, package: PackageContext, *, index: bool = True
) -> FileContext:
    """Imports, package-level bindings and (``index``) the captures and function index of one file."""
    ctx = FileContext(path=path, source=source, tree=tree, package=package)
    root = tree.root_node
    for child in root.named_children:
        kind = child.type
        if kind == "package_clause":
            for c in child.named_children:
                if c.type == "package_identifier":
                    package.name = package.name or text(c)
        elif kind == "import_declaration":
            for spec in _import_specs(child):
                path_node = spec.child_by_field_name("path")
                imp = parse.string_literal(path_node) or ""
                name_node = spec.child_by_field_name("name")
                local = text(name_node) if name_node is not None else imp.rsplit("/", 1)[-1]
                if local in ("_", "."):
                    continue
                if name_node is None and local.startswith("v") and local[1:].isdigit() and "/" in imp:
                    local = imp.rsplit("/", 2)[-2]  # github.com/labstack/echo/v4 -> echo
                if name_node is None and "-" in local:
                    local = local.rsplit("-", 1)[-1]
                ctx.imports[local] = imp
        elif kind in ("const_declaration", "var_declaration"):
            for spec in child.named_children:
                specs = spec.named_children if spec.type == "var_spec_list" else [spec]
                for s in specs:
                    if s.type not in ("const_spec", "var_spec"):
                        continue
                    names = s.children_by_field_name("name")
                    value = s.child_by_field_name("value")
                    values = value.named_children if value is not None else []
                    origin = "const" if s.type == "const_spec" else "var"
                    for i, n in enumerate(names):
                        node = values[i] if i < len(values) else None
                        package.bindings.setdefault(text(n), Binding(node, ctx, origin))
    package.files.append(ctx)
    if not index:
        return ctx
    ctx.caps = {
        name: sorted(nodes, key=_start) for name, nodes in parse.captures(root, parse.FILE_QUERY).items()
    }
    _index_functions(ctx)
    return ctx


def _start(node: Node) -> tuple[int, int]:
    return (node.start_byte, -node.end_byte)


def _import_specs(decl: Node) -> list[Node]:
    specs: list[Node] = []
    for c in decl.named_children:
        if c.type == "import_spec":
            specs.append(c)
        elif c.type == "import_spec_list":
            specs.extend(s for s in c.named_children if s.type == "import_spec")
    return specs


def _params(node: Node) -> dict[str, str]:
    params: dict[str, str] = {}
    plist = node.child_by_field_name("parameters")
    if plist is None:
        return params
    for decl in plist.named_children:
        if decl.type not in ("parameter_declaration", "variadic_parameter_declaration"):
            continue
        typ = text(decl.child_by_field_name("type"))
        for n in decl.children_by_field_name("name"):
            params[text(n)] = typ
    return params


def _receiver(node: Node) -> tuple[str, str]:
    recv = node.child_by_field_name("receiver")
    if recv is None:
        return "", ""
    for decl in recv.named_children:
        if decl.type == "parameter_declaration":
            name = text(decl.child_by_field_name("name"))
            typ = text(decl.child_by_field_name("type")).lstrip("*")
            typ = typ.split("[", 1)[0]
            return name, typ
    return "", ""


def _index_functions(ctx: FileContext) -> None:
    pkg = ctx.package.name or "main"
    spans: list[FuncSpan] = []
    stack: list[FuncSpan] = []
    counters: dict[str, int] = {}
    for node in ctx.caps.get("func", []):
        start, end = node.start_byte, node.end_byte
        while stack and not (stack[-1].start <= start < stack[-1].end):
            stack.pop()
        parent = stack[-1] if stack else None
        if node.type == "function_declaration":
            short = text(node.child_by_field_name("name"))
            span = FuncSpan(node, f"{pkg}.{short}", "function", start, end, parent)
        elif node.type == "method_declaration":
            recv, typ = _receiver(node)
            short = f"{typ}.{text(node.child_by_field_name('name'))}" if typ else text(node)
            span = FuncSpan(node, f"{pkg}.{short}", "method", start, end, parent, recv, typ)
        else:
            top = parent.top() if parent else None
            base = top.name if top else f"{pkg}.glob"
            counters[base] = counters.get(base, 0) + 1
            span = FuncSpan(node, f"{base}.func{counters[base]}", "closure", start, end, parent)
            if parent is not None:
                span.receiver, span.receiver_type = parent.receiver, parent.receiver_type
        span.params = _params(node)
        if span.kind != "closure":
            ctx.package.funcs.setdefault(span.short, span)
        spans.append(span)
        stack.append(span)
    ctx.funcs = spans
    ctx._starts = [s.start for s in spans]
