"""Round-trip editing of multi-document YAML files, one document at a time.

A file is cut into its documents at the parser's document marks. Each document body
is loaded with ruamel's round-trip loader (comments, key order, quoting kept) and, only
if a fix changed it, dumped again in the indentation style it was written in; every
other byte of the file (the text before a ``---``, untouched documents) is kept as is.
That is what keeps a header comment above the first ``---`` (which ruamel drops on a
whole-stream round trip) and the documents the fixes did not touch byte-identical.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.error import MarkedYAMLError, YAMLError
from ruamel.yaml.events import DocumentEndEvent, DocumentStartEvent

from tcpdoctor.model import InputError

# (mapping, sequence, offset) styles tried in order; the first that reproduces a document wins
STYLES: tuple[tuple[int, int, int], ...] = (
    (2, 4, 2),  # "- " indented under its key (most hand-written manifests, Helm charts)
    (2, 2, 0),  # "- " flush with its key (kubectl get -o yaml, yq)
    *((m, s, o) for m in (4, 2, 3) for s in (2, 4, 6) for o in (0, 2, 4) if o <= s - 2),
)
WIDTH = 4096  # never fold long lines the author wrote on one line


def _yaml(style: tuple[int, int, int] = STYLES[0]) -> YAML:
    y = YAML(typ="rt")
    y.preserve_quotes = True
    y.width = WIDTH
    y.allow_duplicate_keys = False
    mapping, sequence, offset = style
    y.indent(mapping=mapping, sequence=sequence, offset=offset)
    return y


@dataclass
class Document:
    """One document of a file: the verbatim ``head`` (text before it, its ``---`` line) and its body."""

    head: str
    body: str
    data: Any = None
    style: tuple[int, int, int] | None = None  # found lazily, on the first dump

    def _dump_with(self, style: tuple[int, int, int]) -> str:
        y = _yaml(style)
        out = io.StringIO()
        y.dump(self.data, out)
        text = out.getvalue()
        if self.body.endswith("\n") and not text.endswith("\n"):
            text += "\n"
        return text

    def find_style(self) -> tuple[int, int, int]:
        """The indentation style that reproduces the document as written (the first one if none does).

        Called before any edit: the untouched data dumped in the right style is the body itself.
        """
        if self.style is None:
            self.style = next((st for st in STYLES if self._dump_with(st) == self.body), STYLES[0])
        return self.style

    def dump(self) -> str:
        return self._dump_with(self.find_style())


@dataclass
class YamlFile:
    path: str
    text: str
    documents: list[Document] = field(default_factory=list)
    tail: str = ""  # text after the last document (a trailing comment block, `...`)

    def render(self, changed: set[int]) -> str:
        """The file's text with the documents in ``changed`` re-dumped, everything else verbatim."""
        parts: list[str] = []
        for i, doc in enumerate(self.documents):
            parts.append(doc.head)
            parts.append(doc.dump() if i in changed else doc.body)
        parts.append(self.tail)
        return "".join(parts)


def _error(path: str, exc: Exception) -> InputError:
    mark = getattr(exc, "problem_mark", None) if isinstance(exc, MarkedYAMLError) else None
    where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark is not None else path
    problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
    return InputError(f"{where}: cannot parse YAML ({problem})")


def _line_end(text: str, index: int) -> int:
    nl = text.find("\n", index)
    return len(text) if nl < 0 else nl + 1


def split_documents(path: str, text: str) -> YamlFile:
    """Cut ``text`` into documents; raises InputError (with line and column) if it is not YAML."""
    yf = YamlFile(path, text)
    cursor = 0
    body_start = 0
    try:
        for event in _yaml().parse(text):
            if isinstance(event, DocumentStartEvent):
                if event.explicit:
                    body_start = _line_end(text, event.end_mark.index)
                else:
                    body_start = event.start_mark.index
                    # comment lines above the content stay in the head, verbatim
                    body_start = text.rfind("\n", cursor, body_start) + 1 if body_start > cursor else cursor
            elif isinstance(event, DocumentEndEvent):
                end = event.end_mark.index
                if event.explicit:
                    end = event.start_mark.index
                yf.documents.append(Document(head=text[cursor:body_start], body=text[body_start:end]))
                cursor = end
    except YAMLError as exc:
        raise _error(path, exc) from None
    yf.tail = text[cursor:]
    for doc in yf.documents:
        try:
            doc.data = _yaml().load(doc.body)
        except YAMLError as exc:
            raise _error(path, exc) from None
    return yf
