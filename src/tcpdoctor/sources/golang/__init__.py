"""The Go source: every .go file under the scanned paths, parsed with tree-sitter-go.

    program = load_go([Path("cmd"), Path("internal")])
    program.servers, program.handlers, program.registrations, ...

Files are grouped by directory (one Go package), and packages are analysed in
worker processes on large trees (``concurrent.futures``), with a progress bar on
stderr when it is a terminal. Files with syntax errors are analysed where the
tree allows (tree-sitter recovers) and counted in ``GoFile.syntax_errors``.

Modules: ``parse`` (grammar, queries, node helpers), ``context`` (imports,
functions, definitions), ``values`` (durations, constants, flag/env defaults),
``servers`` (http.Server, listen calls, shutdown, signals), ``handlers`` (what a
handler does), ``routes`` (registrations and the handler behind each),
``extract`` (one package in, evidence out).
"""

from __future__ import annotations

import multiprocessing
import multiprocessing.context
import os
import sys
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path

from tcpdoctor.evidence.golang import GoProgram
from tcpdoctor.model import Finding
from tcpdoctor.sources.golang.extract import analyse_package, link, merge

# Below this many files the start-up of worker processes costs more than it saves.
PARALLEL_THRESHOLD = 200
CHUNK_FILES = 150

Progress = Callable[[int], None]


def packages_of(files: Iterable[Path]) -> dict[str, list[str]]:
    """Files grouped by directory (one Go package per directory), in path order."""
    groups: dict[str, list[str]] = {}
    for f in sorted(files):
        groups.setdefault(os.path.dirname(str(f)) or ".", []).append(str(f))
    return groups


def _analyse_chunk(chunk: list[tuple[str, list[str]]]) -> GoProgram:
    program = GoProgram()
    for directory, paths in chunk:
        merge(program, analyse_package(directory, paths))
    return program


def _chunks(groups: dict[str, list[str]], size: int) -> list[list[tuple[str, list[str]]]]:
    chunks: list[list[tuple[str, list[str]]]] = []
    current: list[tuple[str, list[str]]] = []
    count = 0
    for directory, paths in groups.items():
        current.append((directory, paths))
        count += len(paths)
        if count >= size:
            chunks.append(current)
            current, count = [], 0
    if current:
        chunks.append(current)
    return chunks


def _pool_context() -> multiprocessing.context.BaseContext:
    """fork where it exists: workers start at once, without re-importing the CLI (Python 3.14 made
    forkserver the Linux default, which re-imports ``__main__`` in every worker)."""
    methods = multiprocessing.get_all_start_methods()
    return multiprocessing.get_context("fork" if "fork" in methods else methods[0])


def worker_count() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def analyse_files(
    files: Sequence[Path],
    *,
    workers: int | None = None,
    progress: Progress | None = None,
    roots: Sequence[Path] = (),
    min_parallel: int = PARALLEL_THRESHOLD,
) -> GoProgram:
    """Analyse ``files`` (already walked); ``progress(n)`` is called as n more files are done.

    Trees of ``min_parallel`` files or more are analysed in ``workers`` processes.
    """
    groups = packages_of(files)
    program = GoProgram(roots=[str(r) for r in roots])
    workers = workers if workers is not None else worker_count()
    if len(files) < min_parallel or workers <= 1:
        for directory, paths in groups.items():
            merge(program, analyse_package(directory, paths))
            if progress:
                progress(len(paths))
    else:
        size = max(20, min(CHUNK_FILES, len(files) // (workers * 4) or 1))
        chunks = _chunks(groups, size)
        with ProcessPoolExecutor(max_workers=workers, mp_context=_pool_context()) as pool:
            futures = {pool.submit(_analyse_chunk, c): sum(len(p) for _, p in c) for c in chunks}
            for fut in as_completed(futures):
                merge(program, fut.result())
                if progress:
                    progress(futures[fut])
    program.files.sort(key=lambda f: f.path)
    link(program)
    return program


def load_go(
    paths: Sequence[Path],
    *,
    include_tests: bool = False,
    workers: int | None = None,
    show_progress: bool | None = None,
) -> GoProgram:
    """Walk ``paths`` and analyse every Go file (progress bar on a terminal's stderr)."""
    from tcpdoctor.sources.files import walk

    files = walk(paths, include_go_tests=include_tests).go
    return analyse_with_progress(files, roots=paths, workers=workers, show_progress=show_progress)


def analyse_with_progress(
    files: Sequence[Path],
    *,
    roots: Sequence[Path] = (),
    workers: int | None = None,
    show_progress: bool | None = None,
) -> GoProgram:
    if show_progress is None:
        show_progress = sys.stderr.isatty() and len(files) > 50
    if not show_progress:
        return analyse_files(files, workers=workers, roots=roots)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(
        TextColumn("Go source"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    ) as bar:
        task = bar.add_task("go", total=len(files))
        return analyse_files(files, workers=workers, roots=roots, progress=lambda n: bar.advance(task, n))


def collect(paths: Sequence[Path], *, include_tests: bool = False) -> GoProgram:
    """The source's entry point for commands (scan, demo): :func:`load_go`."""
    return load_go(paths, include_tests=include_tests)


def suppressor(program: GoProgram) -> Callable[[Finding], bool]:
    return go_suppressor(program)


def go_suppressor(program: GoProgram) -> Callable[[Finding], bool]:
    """A policy Suppressor: `//tcpdoctor:ignore ID reason` on the finding's line or the line above."""

    def suppressed(finding: Finding) -> bool:
        loc = finding.location
        if loc is None or not loc.path.endswith(".go"):
            return False
        return program.suppressed(finding.rule, loc.path, loc.line)

    return suppressed


__all__ = ["analyse_files", "collect", "go_suppressor", "load_go", "packages_of", "suppressor"]
