"""The Go source never raises on odd input: fuzzed fragments of real handler code, broken files."""

from __future__ import annotations

from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

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
    assert len(program.files) == 1
    assert program.files[0].syntax_errors >= 0


def test_self_referencing_constant_is_unknown(tmp_path: Path) -> None:
    path = tmp_path / "main.go"
    path.write_text(
        'package main\n\nimport (\n\t"net/http"\n\t"time"\n)\n\nconst idle = idle * 2 * time.Second\n\n'
        "func main() { (&http.Server{IdleTimeout: idle}).ListenAndServe() }\n"
    )
    (server,) = analyse_package(str(tmp_path), [str(path)]).servers
    assert server.idle_timeout.is_unknown
