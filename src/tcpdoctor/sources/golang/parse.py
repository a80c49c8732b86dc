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


def count_errors(tree: Tree, source: bytes = b"") -> tuple[int, tuple[int, int] | None]:
    """ERROR and MISSING nodes of a tree, and the (row, column) of the first (0 and None when clean).

    The position is that of the token the parse broke on (what ``gofmt -e`` reports), read from
    the ERROR / MISSING node as :func:`error_point` explains.
    """
    root = tree.root_node
    if not root.has_error:
        return 0, None
    count = 0
    first: tuple[int, int] | None = None
    stack = [root]
    while stack:
        node = stack.pop()
        if not node.has_error and not node.is_missing:
            continue
        if node.is_error or node.is_missing:
            count += 1
            point = error_point(node, source)
            if first is None or point < first:
                first = point
            if node.is_missing:
                continue
        children = node.children
        if not node.is_error and not any(c.has_error or c.is_missing for c in children):
            # the error is a hidden node (a MISSING statement terminator, source_file_token1) that
            # `children` does not list: it sits before the child that should have been separated
            count += 1
            after = children[1] if len(children) > 1 else node
            point = (after.start_point[0], after.start_point[1])
            if first is None or point < first:
                first = point
            continue
        stack.extend(children)
    return count, first


def error_point(node: Node, source: bytes = b"") -> tuple[int, int]:
    """Where an ERROR or MISSING node says the syntax error is, as (row, column), 0-based.

    - MISSING: a zero-width node at the end of the token before the gap; the error is the next
      token, so the white space after it is skipped.
    - ERROR that starts with a bare token (``var x int = }``, ``= }``): tree-sitter popped a valid
      but unfinished prefix into the node, so the error is its last token when that is a bare
      token (the ``}``), else the end of the node (an unterminated ``[]int{1,2``); a lone keyword
      (``defer``) wants an operand after it.
    - any other ERROR holds the tokens that were skipped: the error is where it starts.
    """
    if node.is_missing:
        return _skip_blanks(source, node.start_point, newlines=True)
    children = node.children
    if not children or children[0].is_named:
        return node.start_point[0], node.start_point[1]
    if len(children) == 1:
        if text(children[0]).isalpha():
            return _skip_blanks(source, node.end_point, newlines=True)
        return node.start_point[0], node.start_point[1]
    last = children[-1]
    if not last.is_named:
        return last.start_point[0], last.start_point[1]
    return _skip_blanks(source, node.end_point, newlines=False)


def _skip_blanks(source: bytes, point: tuple[int, int], *, newlines: bool) -> tuple[int, int]:
    """(row, column) moved past spaces and tabs (and line ends with ``newlines``) to the next token;
    a column is a byte offset in its line, as tree-sitter counts it."""
    row, column = point
    if not source:
        return row, column
    start = 0
    for _ in range(row):
        start = source.find(b"\n", start) + 1
        if start == 0:
            return row, column
    offset = start + column
    blanks = b" \t\r\n" if newlines else b" \t"
    while offset < len(source) and source[offset] in blanks:
        if source[offset] == 0x0A:
            row, start = row + 1, offset + 1
        offset += 1
    return row, offset - start


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


def keyed_fields(lit: Node) -> list[tuple[str, Node]]:
    """(field name, value node) of a keyed composite literal: ``http.Server{Addr: a, IdleTimeout: d}``."""
    out: list[tuple[str, Node]] = []
    body = lit.child_by_field_name("body")
    for el in body.named_children if body is not None else []:
        if el.type != "keyed_element" or len(el.named_children) < 2:
            continue
        key, val = el.named_children[0], el.named_children[-1]
        value = val.named_children[0] if val.type == "literal_element" and val.named_children else val
        out.append((text(key), value))
    return out


def arguments(call: Node) -> list[Node]:
    args = call.child_by_field_name("arguments")
    if args is None:
        return []
    return [c for c in args.named_children if c.type != "comment"]
