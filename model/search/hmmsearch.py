"""Search profile HMMs against a streamed sequence database on all cores (pyhmmer).

The database file is cut into byte ranges at record boundaries (two per thread, for balance). Each
range reaches easel's C reader through a pipe that a `dd` child fills (`_byte_range_pipe`); with one
profile pyhmmer then searches the stream one sequence at a time, with no Python object per sequence
and without the GIL, so worker threads run in parallel in one process and hand back their hits
without pickling. With several profiles (`search_database_many`: the unique chains of a workflow
run) each block is read once (holding the GIL, a small part of the time) and searched by every
profile, so parsing is paid once per database instead of once per query as with HMMER's binaries.
Memory is bounded by one sequence (one profile) or one block (several) per thread, whatever the
database size. With one thread, a gzipped or a small database, the file is read directly.

Every search runs with the SSE denormals flushed to zero (`flushed_denormals`), as HMMER's own
binaries do (`impl_Init`): pyhmmer >= 0.11.2 stopped setting that mode so that importing it does not
change the arithmetic of the rest of the process, and without it the Forward/Backward recursions of
the domain stage crawl through subnormal floats (measured: 0.78 s instead of 0.35 s of CPU for 102m
against 100,000 sequences). The mode is set only around the search and restored after it.

`TopHits.merge` re-applies the reporting and inclusion thresholds (domZ = number reported), and Z
is fixed to the whole database's size (`database_z`), so the merged hits are those of one
whole-database search: the same hit set as HMMER's binaries. jackhmmer.py, nhmmer.py and
templates.py build their profiles and call `search_database`.
"""

from __future__ import annotations

import ctypes
import fcntl
import io
import logging
import multiprocessing
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from contextlib import ExitStack, contextmanager, suppress
from pathlib import Path
from typing import TypeVar

from pyhmmer import easel, plan7

from model.search.a3m import Row, alignment_to_a3m
from model.search.databases import prepare_database

log = logging.getLogger(__name__)

DEFAULT_BLOCK_RESIDUES = 1 << 21  # ~2 M residues a block: a few MB of memory per worker
RANGES_PER_WORKER = 2  # more ranges balance better but each costs a pipeline, a writer and a merge
MIN_PARALLEL_BYTES = 4 << 20  # database bytes x profiles: less work takes less time than starting workers


# MXCSR bits: FTZ (flush results to zero) and DAZ (read subnormal inputs as zero), both set by HMMER.
_MXCSR_FTZ_DAZ = 0x8000 | 0x0040


class _FloatEnv(ctypes.Structure):
    """glibc's x86-64 `fenv_t`: the x87 environment (28 bytes), then the SSE control register."""

    _fields_ = [("x87", ctypes.c_ubyte * 28), ("mxcsr", ctypes.c_uint32)]


def _libm() -> ctypes.CDLL | None:
    """glibc's libm on x86-64 Linux, where the SSE build of HMMER runs; elsewhere None (NEON and
    other builds of HMMER do not use the SSE control register)."""
    if sys.platform != "linux" or platform.machine() not in ("x86_64", "AMD64"):
        return None
    try:
        return ctypes.CDLL("libm.so.6")  # by soname: ctypes.util.find_library forks ldconfig
    except OSError:
        return None


_LIBM = _libm()


@contextmanager
def flushed_denormals() -> Iterator[None]:
    """Run the block with SSE FTZ and DAZ on in this thread (HMMER's arithmetic), then restore."""
    if _LIBM is None:
        yield
        return
    saved, env = _FloatEnv(), _FloatEnv()
    if _LIBM.fegetenv(ctypes.byref(saved)) != 0:
        raise OSError("fegetenv failed")
    ctypes.memmove(ctypes.byref(env), ctypes.byref(saved), ctypes.sizeof(env))
    env.mxcsr |= _MXCSR_FTZ_DAZ
    if _LIBM.fesetenv(ctypes.byref(env)) != 0:
        raise OSError("fesetenv failed")
    try:
        yield
    finally:
        _LIBM.fesetenv(ctypes.byref(saved))


@contextmanager
def _byte_range_pipe(path: Path, start: int, end: int) -> Iterator[str]:
    """Bytes [start, end) of `path` as a pipe that easel's own C reader opens by name, filled by a
    GNU `dd` child. Easel cannot read a byte range of a file by itself; reading through a Python file
    object costs a Python call per buffer and rules out pyhmmer's streaming search (one sequence at
    a time, no Python objects), and a Python writer thread could wait forever on the GIL, which
    easel's reader holds while it opens the file."""
    read_fd, write_fd = os.pipe()
    with suppress(OSError):  # fewer wake-ups with a 1 MiB pipe; the 64 KiB default also works
        fcntl.fcntl(write_fd, fcntl.F_SETPIPE_SZ, 1 << 20)
    copy = ["dd", f"if={path}", "iflag=skip_bytes,count_bytes", f"skip={start}", f"count={end - start}"]
    try:
        writer = subprocess.Popen([*copy, "bs=1M", "status=none"], stdout=write_fd)
    finally:
        os.close(write_fd)
    try:
        yield f"/dev/fd/{read_fd}"
    except BaseException:
        os.close(read_fd)  # dd then dies of SIGPIPE instead of blocking on a full pipe
        writer.wait()
        raise
    os.close(read_fd)
    if writer.wait() != 0:
        raise OSError(f"dd exited with {writer.returncode} copying bytes {start}-{end} of {path}")


def record_ranges(path: Path, n_ranges: int) -> list[tuple[int, int]]:
    """Cut a FASTA file into up to `n_ranges` byte ranges that each start at a `>` line."""
    size = path.stat().st_size
    cuts = [0]
    with open(path, "rb") as handle:
        for i in range(1, n_ranges):
            handle.seek(max(size * i // n_ranges, cuts[-1]))
            handle.readline()  # skip the partial line
            while True:
                pos, line = handle.tell(), handle.readline()
                if not line or line.startswith(b">"):
                    break
            if cuts[-1] < pos < size:
                cuts.append(pos)
    cuts.append(size)
    return list(zip(cuts[:-1], cuts[1:], strict=True))


@flushed_denormals()
def _search_range(
    hmms: list[plan7.HMM],
    path: Path,
    byte_range: tuple[int, int] | None,
    options: list[dict],
    long_targets: bool,
    block_residues: int,
) -> list[plan7.TopHits] | None:
    """Search every profile against one byte range of `path`, or (None) the whole file, which easel
    may decompress. Each block is read once and searched by every profile."""
    with ExitStack() as stack:
        if byte_range is None:
            source, fmt = str(path), None  # easel may decompress it
        else:
            source, fmt = stack.enter_context(_byte_range_pipe(path, *byte_range)), "fasta"
        seqs = stack.enter_context(
            easel.SequenceFile(source, format=fmt, digital=True, alphabet=hmms[0].alphabet)
        )
        return _search_sequences(hmms, seqs, options, long_targets, block_residues)


def _search_sequences(
    hmms: list[plan7.HMM],
    seqs: easel.SequenceFile,
    options: list[dict],
    long_targets: bool,
    block_residues: int,
) -> list[plan7.TopHits] | None:
    pipeline_class = plan7.LongTargetsPipeline if long_targets else plan7.Pipeline
    alphabet = hmms[0].alphabet
    background = plan7.Background(alphabet)
    if len(hmms) == 1:
        # pyhmmer reads the file itself, one sequence at a time, without the GIL or Python objects
        hits = pipeline_class(alphabet, background, **options[0]).search_hmm(hmms[0], seqs)
        return [hits] if hits.searched_sequences else None
    found: list[list[plan7.TopHits | None]] = [[] for _ in hmms]
    while len(block := seqs.read_block(residues=block_residues)):
        for hmm, opts, levels in zip(hmms, options, found, strict=True):
            # A fresh pipeline per block: a reused long-targets pipeline keeps counting residues.
            _add_merged(levels, pipeline_class(alphabet, background, **opts).search_hmm(hmm, block))
    if not found[0]:
        return None
    return [_merge([hits for hits in levels if hits is not None]) for levels in found]


def _add_merged(levels: list[plan7.TopHits | None], hits: plan7.TopHits) -> None:
    """Fold one block's hits into a binary counter of merged hits (`levels[i]` covers 2**i blocks):
    a query keeps at most log2(blocks) TopHits, each hit is copied log2(blocks) times, instead of one
    TopHits per block (~20 KiB each, even empty: 15,000 blocks for UniRef90) or a merge per block
    that copies every hit found so far."""
    for i, held in enumerate(levels):
        if held is None:
            levels[i] = hits
            return
        hits, levels[i] = held.merge(hits), None
    levels.append(hits)


def _merge(hits: list[plan7.TopHits]) -> plan7.TopHits:
    return hits[0].merge(*hits[1:]) if len(hits) > 1 else hits[0]


Query = TypeVar("Query")


@flushed_denormals()
def _build_one(build: Callable[[Query], plan7.HMM], query: Query) -> plan7.HMM:
    return build(query)


def build_profiles(
    build: Callable[[Query], plan7.HMM], queries: list[Query], threads: int = 1
) -> list[plan7.HMM]:
    """`build` (a module-level function: it is sent to worker processes) of every query, in HMMER's
    arithmetic (calibration runs Forward on sampled sequences: denormals again), on `threads`
    processes when there are several queries: ~13-20 ms of calibration each, which the binaries
    spend one query after another."""
    if threads <= 1 or len(queries) < 2:
        return [_build_one(build, query) for query in queries]
    context = multiprocessing.get_context("fork" if os.name == "posix" else "spawn")
    with ProcessPoolExecutor(max_workers=threads, mp_context=context) as pool:
        chunk = max(1, len(queries) // (4 * threads))
        return list(pool.map(_build_one, [build] * len(queries), queries, chunksize=chunk))


def as_written(hmm: plan7.HMM) -> plan7.HMM:
    """`hmm` through HMMER's text format, which rounds every probability to 5 decimals of its log. AF3's
    hmmsearch and hmmalign read the profile hmmbuild wrote, and the rounding decides hits at a filter
    threshold or a domain boundary (measured: 8 of 5,420 template domains on the shared pdb_seqres
    moved without it)."""
    text = io.BytesIO()
    hmm.write(text)
    text.seek(0)
    with plan7.HMMFile(text) as written:
        return written.read()


def search_database(
    hmm: plan7.HMM,
    database: str | Path,
    options: dict,
    long_targets: bool = False,
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> plan7.TopHits:
    """Search `hmm` against every sequence of the FASTA `database`; returns the merged hits.

    `options` are pyhmmer Pipeline keywords (E, incE, F1.., Z); `long_targets` uses nhmmer's
    LongTargetsPipeline. Gzipped databases cannot be cut into ranges, and searches under
    `MIN_PARALLEL_BYTES` of work are not worth it: both are read by one worker.
    """
    return search_database_many([hmm], database, [options], long_targets, threads, block_residues)[0]


def search_database_many(
    hmms: list[plan7.HMM],
    database: str | Path,
    options: list[dict],
    long_targets: bool = False,
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> list[plan7.TopHits]:
    """Search every profile of `hmms` (with its own `options`) against the FASTA `database` in one
    pass: the database is read once for all of them, in bounded blocks. Each profile's hits equal
    those of `search_database` for that profile alone."""
    database = Path(database)
    if not database.is_file():
        raise FileNotFoundError(f"database {database}: file not found")
    if not hmms or len(options) != len(hmms):
        raise ValueError(f"search of {database.name}: {len(hmms)} profiles but {len(options)} option sets")
    threads = max(1, threads)
    start = time.perf_counter()
    work = database.stat().st_size * len(hmms)
    # byte ranges need GNU dd (`_byte_range_pipe`): elsewhere (macOS's BSD dd) one stream, one thread
    parallel = sys.platform == "linux" and threads > 1 and database.suffix != ".gz"
    parallel = parallel and work >= MIN_PARALLEL_BYTES
    ranges = record_ranges(database, threads * RANGES_PER_WORKER) if parallel else [None]
    jobs = [(hmms, database, byte_range, options, long_targets, block_residues) for byte_range in ranges]
    if len(jobs) == 1:
        results = [_search_range(*jobs[0])]
    else:
        with ThreadPoolExecutor(max_workers=threads) as pool:
            results = list(pool.map(_search_range, *zip(*jobs, strict=True)))
    results = [r for r in results if r is not None]
    if not results:
        raise ValueError(f"database {database}: no sequences")
    merged = [_merge(list(parts)) for parts in zip(*results, strict=True)]
    log.info(
        "searched %s: %d profiles x %d sequences, %d hits included in %.1f s on %d workers",
        database.name,
        len(hmms),
        merged[0].searched_sequences,
        sum(len(hits.included) for hits in merged),
        time.perf_counter() - start,
        threads,
    )
    return merged


def database_z(database: str | Path, long_targets: bool = False) -> float:
    """HMMER's default Z for `database`: its sequence count, or for nhmmer its megabases of one strand
    (what `nhmmer -Z` takes: nhmmer and pyhmmer's LongTargetsPipeline double it for both strands)."""
    stats = prepare_database(database)
    return stats.n_residues / 1e6 if long_targets else float(stats.n_sequences)


def hits_to_rows(hits: plan7.TopHits, query_length: int, max_rows: int | None = None) -> list[Row]:
    """A3M rows for every included domain of every included hit, best E-value first.

    Row names follow HMMER's Stockholm output (`name/from-to`), then the hit's description.
    """
    rows: list[Row] = []
    for hit in hits.included:
        for domain in hit.domains.included:
            if max_rows is not None and len(rows) >= max_rows:
                return rows
            ali = domain.alignment
            row = alignment_to_a3m(
                ali.hmm_from, ali.hmm_to, query_length, ali.hmm_sequence, ali.target_sequence
            )
            desc = f"{hit.name}/{ali.target_from}-{ali.target_to}"
            if hit.description:
                desc += f" {hit.description}"
            rows.append((desc, row))
    return rows
