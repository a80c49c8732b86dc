"""The Go source never raises on odd input: fuzzed fragments of real handler code, broken files."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tcpdoctor.model import Location
from tcpdoctor.sources.golang import parse
from tcpdoctor.sources.golang.extract import analyse_package

FRAGMENTS = [
    "package main\n",
    'import (\n\t"net/http"\n\t"time"\n)\n',
    "func main() {\n",
    "}\n",
    'srv := &http.Server{Addr: ":8080", IdleTimeout: 5 * time.Second}\n',
    "srv.IdleTimeout = time.Duration(n) * time.Second\n",
    'http.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {\n',
    'w.Header().Set("Content-Type", "text/event-stream")\n',
    "for {\n",
    'fmt.Fprintf(w, "data: x\\n\\n")\n',
    "srv.Shutdown(ctx)\n",
    "ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)\n",
    "const idle = idle * 2\n",  # a cycle: must stay unknown, not recurse forever
    "x := y\ny := x\nsrv.ReadTimeout = x\n",
    "func (s *S[T]) ServeHTTP(w http.ResponseWriter, r *http.Request) {\n",
    "mux.Handle(pattern, h)\n",
    '))}{("\n',
    "`raw\n",
    "//tcpdoctor:ignore SRV001 reason\n",
]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(parts=st.lists(st.sampled_from(FRAGMENTS), min_size=1, max_size=25), noise=st.binary(max_size=40))
def test_fuzzed_fragments_never_raise(tmp_path: Path, parts: list[str], noise: bytes) -> None:
    path = tmp_path / "main.go"
    path.write_bytes("".join(parts).encode() + noise)
    program = analyse_package(str(tmp_path), [str(path)])
    (gofile,) = program.files
    tree = parse.parse(path.read_bytes())
    # an error count exactly when tree-sitter flags the tree, and a first position inside the file
    assert (gofile.syntax_errors > 0) == tree.root_node.has_error
    assert (gofile.first_error is None) == (gofile.syntax_errors == 0)
    if gofile.first_error is not None:
        line = gofile.first_error.line or 0
        assert line >= 1 and line <= tree.root_node.end_point[0] + 1


# three independent errors; the positions are those gofmt -e gives for the first two
THREE_ERRORS = "package main\n\nfunc a() {\n\tvar x int = }\n}\n\nfunc b() {\n\tfoo(1, 2\n}\n\nfunc c( {\n}\n"


def test_syntax_error_count_and_position(tmp_path: Path) -> None:
    path = tmp_path / "bad.go"
    path.write_text(THREE_ERRORS)
    (gofile,) = analyse_package(str(tmp_path), [str(path)]).files
    assert gofile.syntax_errors == 3
    assert gofile.first_error == Location(str(path), 4, 14)  # the `}` where an operand is expected


@pytest.mark.parametrize(
    ("line", "column"),
    [
        ("var x int = }", 13),  # ERROR(var x int = }): its last token, not the `var` at column 1
        ("var s = []int{1,2", 18),  # unterminated: the end of the line
        ("func main( {", 12),  # MISSING ")": the `{` after it, not the gap after `(`
        ("func f() { return 1 +* }", 24),
        ('func g() { fmt.Println("hi" }', 29),
    ],
)
def test_syntax_error_column_is_the_broken_token(tmp_path: Path, line: str, column: int) -> None:
    path = tmp_path / "bad.go"
    path.write_text(f"package main\n{line}\n")
    (gofile,) = analyse_package(str(tmp_path), [str(path)]).files
    assert gofile.syntax_errors >= 1
    assert gofile.first_error == Location(str(path), 2, column)


def test_self_referencing_constant_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "main.go"
    path.write_text(
        'package main\n\nimport (\n\t"net/http"\n\t"time"\n)\n\nconst idle = idle * 2 * time.Second\n\n'
        "func main() { (&http.Server{IdleTimeout: idle}).ListenAndServe() }\n"
    )
    (server,) = analyse_package(str(tmp_path), [str(path)]).servers
    assert server.idle_timeout.is_unknown
