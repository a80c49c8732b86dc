"""Reading YAML/JSON manifest files into documents that remember where every node was.

Two loaders, one shape:

* the **fast** loader (scan): PyYAML's libyaml (C) parser with a small constructor that
  builds :class:`PosMap` / :class:`PosSeq` (a dict / list that also carries the 0-based
  line and column of every key and item). It is YAML 1.1, like the Go YAML decoder that
  kubectl and the API machinery use (``yes``/``on`` are booleans there too).
* the **round-trip** loader (``tcpdoctor fix``): ruamel.yaml's ``CommentedMap`` /
  ``CommentedSeq``, which keep comments, key order and quoting so that a fix can edit a
  node and write the file back.

Both expose positions the same way, ``node.lc.line``, ``node.lc.col`` and
``node.lc.data[key_or_index]`` (``[key_line, key_col, value_line, value_col]`` for a
mapping, ``[line, col]`` for a sequence item), so the record extraction in
:mod:`tcpdoctor.sources.manifests.extract` works on either.

Bad input never escapes as an exception of the YAML library: :func:`load_text` raises
:class:`ParseFailure` carrying a :class:`~tcpdoctor.evidence.manifests.ParseError` with
the 1-based line and column. Alias bombs ("billion laughs") are refused before anything
is constructed, with the Go YAML decoder's rule (excessive aliasing).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from tcpdoctor.evidence.manifests import ParseError
from tcpdoctor.sources.files import Skip, read_text

_Base: Any = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

# Alias expansion limits, after go-yaml v2 (decode.go allowedAliasRatio), which is what the
# API server and kubectl use through sigs.k8s.io/yaml: a document may expand aliases to at most
# 4,000,000 nodes, and a large document may not be mostly aliases.
MAX_EXPANDED_NODES = 4_000_000
_RATIO_FLOOR, _RATIO_CEIL = 400_000, 4_000_000


class ManifestReadError(Exception):
    """A manifest file that yields no documents: see :class:`ParseFailure` / :class:`SkippedFile`."""


class ParseFailure(ManifestReadError):
    """The file is not valid YAML/JSON (or is an alias bomb); ``error`` says where."""

    def __init__(self, error: ParseError) -> None:
        super().__init__(error.message)
        self.error = error


class SkippedFile(ManifestReadError):
    """The file was not read: binary, too large or unreadable; ``skip`` says why."""

    def __init__(self, skip: Skip) -> None:
        super().__init__(skip.reason)
        self.skip = skip


class PosMap(dict[Any, Any]):
    """A dict that knows where it and each of its keys/values stood in the file (0-based)."""

    __slots__ = ("col", "data", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line = line
        self.col = col
        self.data: dict[Any, tuple[int, int, int, int]] = {}

    @property
    def lc(self) -> PosMap:
        return self


class PosSeq(list[Any]):
    """A list that knows where it and each of its items stood in the file (0-based)."""

    __slots__ = ("col", "data", "line")

    def __init__(self, line: int, col: int) -> None:
        super().__init__()
        self.line = line
        self.col = col
        self.data: list[tuple[int, int]] = []

    @property
    def lc(self) -> PosSeq:
        return self


@dataclass
class Document:
    """One YAML document of a file (``index`` counts from 0), its data and where it starts (1-based)."""

    path: str
    index: int
    data: Any
    line: int = 1
    column: int = 1


_STR_TAG = "tag:yaml.org,2002:str"
_SEQ_TAG = "tag:yaml.org,2002:seq"
_MAP_TAG = "tag:yaml.org,2002:map"
_RESOLVED: dict[str, str] = {}  # plain scalar -> tag: manifests repeat the same few thousand values
_RESOLVED_MAX = 100_000


class _PosLoader(_Base):
    """libyaml parser + a constructor that records positions and rejects duplicate keys.

    Two shortcuts keep it near the speed of a bare ``yaml.load`` although it builds more: the
    implicit tag of a plain scalar is cached by its text (PyYAML re-runs its regular expressions
    for every scalar), and plain strings skip the generic constructor dispatch.
    """

    def resolve(self, kind: Any, value: Any, implicit: Any) -> str:
        if kind is yaml.ScalarNode:
            if not implicit[0]:
                return _STR_TAG  # quoted: always a string (no path resolvers here)
            tag = _RESOLVED.get(value)
            if tag is None:
                tag = super().resolve(kind, value, implicit)
                if len(_RESOLVED) < _RESOLVED_MAX:
                    _RESOLVED[value] = tag
            return tag
        return _SEQ_TAG if kind is yaml.SequenceNode else _MAP_TAG

    def construct_object(self, node: yaml.Node, deep: bool = False) -> Any:
        if node.__class__ is yaml.ScalarNode:
            tag = node.tag
            if tag == _STR_TAG:
                return node.value
            known = self.yaml_constructors.get(tag)
            if known is not None:
                return known(self, node)
        return super().construct_object(node, deep)

    def construct_pos_mapping(self, node: yaml.MappingNode) -> PosMap:
        if any(k.tag == "tag:yaml.org,2002:merge" for k, _ in node.value):
            self.flatten_mapping(node)
        start = node.start_mark
        out = PosMap(start.line, start.column)
        data = out.data
        for key_node, value_node in node.value:
            key = self.construct_object(key_node)
            try:
                duplicate = key in out
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable (mapping or sequence) key", key_node.start_mark
                ) from None
            if duplicate:
                first = data[key][0] + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first defined on line {first})", key_node.start_mark
                )
            out[key] = self.construct_object(value_node)
            km, vm = key_node.start_mark, value_node.start_mark
            data[key] = (km.line, km.column, vm.line, vm.column)
        return out

    def construct_pos_sequence(self, node: yaml.SequenceNode) -> PosSeq:
        start = node.start_mark
        out = PosSeq(start.line, start.column)
        data = out.data
        for item in node.value:
            out.append(self.construct_object(item))
            m = item.start_mark
            data.append((m.line, m.column))
        return out

    def construct_plain(self, node: yaml.Node) -> Any:
        """Unknown tags (``!Ref``, ``!vault``...) load as their plain value instead of failing."""
        if isinstance(node, yaml.MappingNode):
            return self.construct_pos_mapping(node)
        if isinstance(node, yaml.SequenceNode):
            return self.construct_pos_sequence(node)
        return self.construct_scalar(node)


_PosLoader.add_constructor("tag:yaml.org,2002:map", _PosLoader.construct_pos_mapping)
_PosLoader.add_constructor("tag:yaml.org,2002:seq", _PosLoader.construct_pos_sequence)
_PosLoader.add_constructor("tag:yaml.org,2002:timestamp", _PosLoader.construct_yaml_str)
_PosLoader.add_constructor(None, _PosLoader.construct_plain)


def _allowed_alias_ratio(decoded: int) -> float:
    if decoded <= _RATIO_FLOOR:
        return 0.99
    if decoded >= _RATIO_CEIL:
        return 0.10
    return 0.99 - 0.89 * (decoded - _RATIO_FLOOR) / (_RATIO_CEIL - _RATIO_FLOOR)


def check_aliases(root: yaml.Node) -> str | None:
    """Why a composed document must be refused (alias bomb, recursive alias), or None.

    Counts, without building anything, how many nodes the document would have with every
    alias expanded, and how many of those come from aliases.
    """
    sizes: dict[int, int] = {}
    on_stack: set[int] = set()
    # iterative post-order walk of the node graph (aliases are shared node objects)
    stack: list[tuple[yaml.Node, bool]] = [(root, False)]
    while stack:
        node, done = stack.pop()
        ident = id(node)
        if done:
            on_stack.discard(ident)
            total = 1
            for child in _children(node):
                total += sizes[id(child)]
            sizes[ident] = min(total, MAX_EXPANDED_NODES + 1)
            continue
        if ident in sizes:
            continue
        if ident in on_stack:
            return "recursive alias (a node that contains itself)"
        on_stack.add(ident)
        stack.append((node, True))
        for child in _children(node):
            cid = id(child)
            if cid in on_stack:
                m = child.start_mark
                return f"recursive alias (a node that contains itself, anchored on line {m.line + 1})"
            if cid not in sizes:
                stack.append((child, False))
    expanded = sizes[id(root)]
    distinct = len(sizes)
    if expanded > MAX_EXPANDED_NODES:
        return f"alias bomb refused: aliases expand to more than {MAX_EXPANDED_NODES:,} nodes"
    aliased = expanded - distinct
    if aliased > 100 and expanded > 1000 and aliased / expanded > _allowed_alias_ratio(expanded):
        return f"alias bomb refused: {aliased:,} of {expanded:,} nodes come from aliases"
    return None


def _children(node: yaml.Node) -> Iterator[yaml.Node]:
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            yield k
            yield v
    elif isinstance(node, yaml.SequenceNode):
        yield from node.value


def _error(path: str, exc: BaseException) -> ParseError:
    """A ParseError from any YAML/JSON/decoding exception, with a 1-based position when known."""
    mark = getattr(exc, "problem_mark", None) or getattr(exc, "context_mark", None)
    line = column = None
    if mark is not None:
        line, column = mark.line + 1, mark.column + 1
    if isinstance(exc, json.JSONDecodeError):
        line, column = exc.lineno, exc.colno
        message = exc.msg
    elif isinstance(exc, UnicodeDecodeError):
        message = f"not valid {exc.encoding.upper()} text (byte {exc.start})"
        before = bytes(exc.object[: exc.start])
        line = before.count(b"\n") + 1
        column = exc.start - (before.rfind(b"\n") + 1) + 1
    elif isinstance(exc, yaml.MarkedYAMLError) or hasattr(exc, "problem"):
        parts = [getattr(exc, "context", None), getattr(exc, "problem", None)]
        message = "; ".join(str(p) for p in parts if p) or type(exc).__name__
    elif isinstance(exc, RecursionError):
        message = "nesting too deep"
    else:
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return ParseError(path=path, message=message, line=line, column=column)


def _looks_json(path: str, text: str) -> bool:
    return path.lower().endswith(".json") or text.lstrip()[:1] in ("{", "[")


def _fast_documents(text: str, path: str) -> list[Document]:
    loader = _PosLoader(text)
    may_alias = "*" in text and "&" in text
    docs: list[Document] = []
    try:
        while loader.check_node():
            node = loader.get_node()
            if node is None:
                continue
            if may_alias:
                refused = check_aliases(node)
                if refused:
                    m = node.start_mark
                    raise ParseFailure(ParseError(path, refused, m.line + 1, m.column + 1))
            data = loader.construct_document(node)
            m = node.start_mark
            docs.append(Document(path, len(docs), data, m.line + 1, m.column + 1))
    finally:
        loader.dispose()
    return docs


def _roundtrip_documents(text: str, path: str) -> list[Document]:
    if "*" in text and "&" in text:
        _fast_documents(text, path)  # refuses alias bombs before ruamel builds anything
    docs: list[Document] = []
    for data in roundtrip_yaml().load_all(text):
        lc = getattr(data, "lc", None)
        line = (lc.line + 1) if lc is not None and lc.line is not None else 1
        column = (lc.col + 1) if lc is not None and lc.col is not None else 1
        docs.append(Document(path, len(docs), data, line, column))
    return docs


def roundtrip_yaml() -> Any:
    """The ruamel.yaml round-trip instance `tcpdoctor fix` loads and dumps with (quotes kept)."""
    from ruamel.yaml import YAML

    rt = YAML(typ="rt")
    rt.preserve_quotes = True
    rt.width = 4096
    return rt


def load_text(text: str, path: str, *, roundtrip: bool = False) -> list[Document]:
    """Every document of ``text`` (YAML, or JSON); raises :class:`ParseFailure`, nothing else."""
    try:
        if roundtrip:
            return _roundtrip_documents(text, path)
        is_json = _looks_json(path, text)
        if is_json and "\t" in text:
            # tabs are plain whitespace in JSON but not in YAML; outside strings they are the
            # only difference that matters here, and inside strings JSON forbids raw tabs
            text = text.replace("\t", " ")
        try:
            return _fast_documents(text, path)
        except (yaml.YAMLError, ValueError) as exc:
            if not is_json:
                raise
            try:  # JSON that YAML 1.1 reads differently: positions of the document only
                return [Document(path, 0, json.loads(text))]
            except json.JSONDecodeError:
                raise exc from None
    except ParseFailure:
        raise
    except (Exception, RecursionError) as exc:  # every library error becomes a positioned finding
        raise ParseFailure(_error(path, exc)) from None


def read_file(path: Path, roundtrip: bool = False) -> list[Document]:
    """Every document of one manifest file.

    ``roundtrip=False`` (scan): fast C loader, documents are :class:`PosMap` / :class:`PosSeq`.
    ``roundtrip=True`` (fix): ruamel ``CommentedMap`` / ``CommentedSeq`` that can be edited and
    dumped back with :func:`roundtrip_yaml`.

    Raises :class:`ParseFailure` (invalid YAML/JSON, bad encoding, alias bomb: a TDR001 finding)
    or :class:`SkippedFile` (binary, over the size limit, unreadable: a note).
    """
    name = str(path)
    try:
        text = read_text(path)
    except UnicodeDecodeError as exc:
        raise ParseFailure(_error(name, exc)) from None
    if isinstance(text, Skip):
        raise SkippedFile(text)
    return load_text(text, name, roundtrip=roundtrip)
