"""Benchmark: Foldline's in-process jackhmmer against HMMER's `jackhmmer` binary, same thread count.

Builds a deterministic protein database of N sequences (default 100,000) from mutated copies of the
shared protein sequences (../shared/data/seqdb: the real MSA hits plus the UniRef90/UniProt/MGnify/BFD
subsets), then searches the 102m query with AF3's settings both ways, each in its own process:

    jackhmmer -o /dev/null -A out.sto --noali --tblout hits.tbl --cpu T -N 1 -E 1e-4 --incE 1e-4
              --F1 5e-4 --F2 5e-5 --F3 5e-7 query.fa db.fa          (what AF3 runs)
    model.search.jackhmmer.search_protein(query, db, threads=T)     (Foldline)

and prints wall time, peak resident memory (ru_maxrss of the child), and hit-set agreement. Foldline
is also run on a quarter-size database to show its memory does not grow with the database.

    .venv/bin/python bench/search.py [--n-sequences 100000] [--threads 2] [--work-dir /tmp/foldline-bench]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
SEQDB = REPO.parent / "shared" / "data" / "seqdb"
SOURCES = (
    "msa_hits_for_shared_queries.fasta",
    "uniref90__subsampled_1000.fasta",
    "uniprot_all__subsampled_1000.fasta",
    "mgy_clusters__subsampled_1000.fa",
    "bfd-first_non_consensus_sequences__subsampled_1000.fasta",
)
QUERY_102M = (
    "MVLSEGEWQLVLHVWAKVEADVAGHGQDILIRLFKSHPETLEKFDRFKHLKTEAEMKASEDLKKAGVTVLTALGAILKKKGHHEAELKPLAQSHATKHK"
    "IPIKYLEFISEAIIHVLHSRHPGNFGADAQGAMNKALELFRKDIAAKYKELGYQG"
)
AMINO = np.frombuffer(b"ACDEFGHIKLMNPQRSTVWY", dtype=np.uint8)


def read_fasta(path: Path) -> list[tuple[str, str]]:
    records, name, chunks = [], None, []
    for line in path.read_text().splitlines():
        if line.startswith(">"):
            if name is not None:
                records.append((name, "".join(chunks)))
            name, chunks = line[1:].split()[0], []
        else:
            chunks.append(line.strip())
    if name is not None:
        records.append((name, "".join(chunks)))
    return records


def build_database(path: Path, n_sequences: int, seed: int) -> None:
    """N mutated copies of the shared sequences: 5-40 % substitutions and a few short indels each."""
    sources = [rec for name in SOURCES for rec in read_fasta(SEQDB / name)]
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        for i in range(n_sequences):
            name, seq = sources[rng.integers(len(sources))]
            arr = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
            rate = rng.uniform(0.05, 0.40)
            sites = rng.random(arr.size) < rate
            arr[sites] = AMINO[rng.integers(len(AMINO), size=int(sites.sum()))]
            text = arr.tobytes().decode()
            for _ in range(rng.integers(0, 3)):  # short indels
                pos = int(rng.integers(len(text)))
                if rng.random() < 0.5:
                    text = text[:pos] + text[pos + int(rng.integers(1, 4)) :]
                else:
                    ins = AMINO[rng.integers(len(AMINO), size=int(rng.integers(1, 4)))].tobytes().decode()
                    text = text[:pos] + ins + text[pos:]
            out.write(f">mut{i:07d}_{name} copy {i} of {name}\n{text}\n")
    os.replace(tmp, path)


def run_child(cmd: list[str]) -> tuple[float, int, str, float]:
    """Run `cmd` in a fresh process; returns (wall seconds, its peak RSS in MiB, stdout, CPU seconds).

    CPU seconds (user + system, the child's workers included) do not depend on how busy a shared
    machine is, unlike wall time."""
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to get its own rusage
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{cmd[0]} failed with exit code {os.waitstatus_to_exitcode(status)}")
    return wall, usage.ru_maxrss // 1024, out, usage.ru_utime + usage.ru_stime


def run_binary(query: Path, db: Path, threads: int, work: Path) -> tuple[float, int, set[str], float]:
    from model.search.jackhmmer import JackhmmerSettings

    tbl, sto = work / "binary.tbl", work / "binary.sto"
    cmd = [
        "jackhmmer",
        "-o",
        os.devnull,
        "-A",
        str(sto),
        "--noali",
        "--tblout",
        str(tbl),
        "--cpu",
        str(threads),
    ]
    wall, peak, _, cpu = run_child(cmd + JackhmmerSettings().binary_flags() + [str(query), str(db)])
    names = {line.split()[0] for line in tbl.read_text().splitlines() if not line.startswith("#")}
    return wall, peak, names, cpu


def run_foldline(db: Path, threads: int) -> tuple[float, int, set[str], float, float]:
    """Wall time of the whole child (interpreter start and imports included), peak RSS, hits,
    the search time measured inside the child, and CPU seconds."""
    cmd = [sys.executable, __file__, "--worker", str(db), "--threads", str(threads)]
    wall, peak, out, cpu = run_child(cmd)
    result = json.loads(out)
    return wall, peak, set(result["hits"]), result["search_seconds"], cpu


def worker(db: Path, threads: int) -> None:
    sys.path.insert(0, str(REPO))
    from model.search.jackhmmer import search_protein

    start = time.perf_counter()
    result = search_protein(QUERY_102M, db, threads=threads)
    seconds = time.perf_counter() - start
    print(json.dumps({"hits": result.hit_names, "rows": len(result.rows), "search_seconds": seconds}))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-sequences", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=3, help="timed runs of each tool (best is reported)")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/foldline-bench-search"))
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.threads)
        return
    if shutil.which("jackhmmer") is None:
        sys.exit("bench/search.py: HMMER's jackhmmer binary is not on PATH (make sysdeps)")
    sys.path.insert(0, str(REPO))
    from model.search.databases import prepare_database

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    query = work / "query.fa"
    query.write_text(f">query\n{QUERY_102M}\n")
    db = work / f"db_{args.n_sequences}_{args.seed}.fa"
    small = work / f"db_{args.n_sequences // 4}_{args.seed}.fa"
    for path, n in ((db, args.n_sequences), (small, args.n_sequences // 4)):
        if not path.is_file():
            start = time.perf_counter()
            build_database(path, n, args.seed)
            print(
                f"built {path.name}: {n} sequences, {path.stat().st_size / 1e6:.1f} MB "
                f"in {time.perf_counter() - start:.1f} s",
                flush=True,
            )

        prepare_database(path, write_sidecar=True)  # what the `databases` rule does once

    load_before = os.getloadavg()[0]
    binary, ours, binary_1, ours_1 = [], [], [], []
    for _ in range(args.repeats):  # interleaved, so a busy spell on a shared machine hits both tools
        binary.append(run_binary(query, db, args.threads, work))
        ours.append(run_foldline(db, args.threads))
        binary_1.append(run_binary(query, db, 1, work)[0])
        ours_1.append(run_foldline(db, 1)[3])
    ours_small = run_foldline(small, args.threads)
    t_bin, t_ours = min(r[0] for r in binary), min(r[0] for r in ours)
    hits_bin, hits_ours = binary[0][2], ours[0][2]
    version = subprocess.run(["jackhmmer", "-h"], capture_output=True, text=True).stdout.split("\n")[1]
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "database": {"sequences": args.n_sequences, "bytes": db.stat().st_size, "seed": args.seed},
        "threads": args.threads,
        "binary": {
            "version": version,
            "seconds": [round(r[0], 2) for r in binary],
            "peak_rss_mib": binary[0][1],
            "cpu_seconds": round(min(r[3] for r in binary), 2),
        },
        "foldline": {
            "seconds": [round(r[0], 2) for r in ours],
            "peak_rss_mib": ours[0][1],
            "search_seconds_in_process": [round(r[3], 2) for r in ours],
            "peak_rss_mib_quarter_db": ours_small[1],
            "cpu_seconds": round(min(r[4] for r in ours), 2),
        },
        "speedup": round(t_bin / t_ours, 2),
        "speedup_in_process": round(t_bin / min(r[3] for r in ours), 2),
        "one_thread_seconds": {
            "binary": round(min(binary_1), 2),
            "foldline_in_process": round(min(ours_1), 2),
        },
        "load_average_1min": [round(load_before, 2), round(os.getloadavg()[0], 2)],
        "hits": {
            "binary": len(hits_bin),
            "foldline": len(hits_ours),
            "shared": len(hits_bin & hits_ours),
            "identical": hits_bin == hits_ours,
        },
    }
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
