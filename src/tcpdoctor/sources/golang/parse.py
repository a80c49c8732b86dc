"""tree-sitter-go: the parser, the node helpers, and the queries every extractor shares."""

from __future__ import annotations

from functools import cache
from importlib import resources

import tree_sitter_go
from tree_sitter import Language, Node, Parser, Query, QueryCursor, Tree

from tcpdoctor.model import Location

GO = Language(tree_sitter_go.language())

FUNC_TYPES = frozenset({"function_declaration", "method_declaration", "func_literal"})


def _load_query(name: str) -> str:
    return (resources.files(__package__) / "queries" / name).read_text(encoding="utf-8")


# One query per file, run in C (queries/file.scm); definitions in a function body (queries/defs.scm).
FILE_QUERY = _load_query("file.scm")
DEFS_QUERY = _load_query("defs.scm")


@cache
def parser() -> Parser:
    return Parser(GO)


@cache
def query(source: str) -> Query:
    return Query(GO, source)


def parse(source: bytes) -> Tree:
    return parser().parse(source)


def captures(node: Node, query_source: str) -> dict[str, list[Node]]:
    return QueryCursor(query(query_source)).captures(node)


def text(node: Node | None) -> str:
    if node is None or node.text is None:
        return ""
    return node.text.decode("utf-8", "replace")


def location(path: str, node: Node) -> Location:
    row, col = node.start_point
    return Location(path, row + 1, col + 1)


def count_errors(tree: Tree) -> tuple[int, tuple[int, int] | None]:
    """ERROR and MISSING nodes of a tree (0 and None when it parsed cleanly)."""
    root = tree.root_node
    if not root.has_error:
        return 0, None
    count = 0
    first: tuple[int, int] | None = None
    stack = [root]
    while stack:
        node = stack.pop()
        if not node.has_error:
            continue
        if node.is_error or node.is_missing:
            count += 1
            if first is None or node.start_point < first:
                first = (node.start_point[0], node.start_point[1])
            if node.is_missing:
                continue
        stack.extend(node.children)
    return count, first


def string_literal(node: Node | None) -> str | None:
    """The value of a Go string literal ("..." or `...`), escapes left as written except \\" and \\\\."""
    if node is None:
        return None
    if node.type == "raw_string_literal":
        return text(node)[1:-1]
    if node.type == "interpreted_string_literal":
        raw = text(node)[1:-1]
        return raw.replace('\\"', '"').replace("\\\\", "\\")
    return None


def unparen(node: Node) -> Node:
    while node.type == "parenthesized_expression" and node.named_child_count:
        inner = node.named_children[0]
        node = inner
    return node


def call_parts(call: Node) -> tuple[str, str, Node | None]:
    """(operand text, name, operand node) of a call: `srv.ListenAndServe()` -> ("srv", "ListenAndServe")."""
    fn = call.child_by_field_name("function")
    if fn is None:
        return "", "", None
    if fn.type == "selector_expression":
        operand = fn.child_by_field_name("operand")
        return text(operand), text(fn.child_by_field_name("field")), operand
    if fn.type == "identifier":
        return "", text(fn), None
    return text(fn), "", None


def arguments(call: Node) -> list[Node]:
    args = call.child_by_field_name("arguments")
    if args is None:
        return []
    return [c for c in args.named_children if c.type != "comment"]
