"""Benchmark: Foldline's in-process jackhmmer against HMMER's `jackhmmer` binary, same thread count.

Builds a deterministic protein database of N sequences (default 100,000) from mutated copies of the
shared protein sequences (../shared/data/seqdb: the real MSA hits plus the UniRef90/UniProt/MGnify/BFD
subsets), then runs AF3's jackhmmer settings both ways, each in a fresh process:

    jackhmmer -o /dev/null -A out.sto --noali --tblout hits.tbl --cpu T -N 1 -E 1e-4 --incE 1e-4
              --F1 5e-4 --F2 5e-5 --F3 5e-7 queries.fa db.fa        (what AF3 runs)
    model.search.jackhmmer.search_proteins(queries, db, threads=T)  (Foldline)

Two scenarios: the 102m query alone (what one workflow job searches), and every unique protein chain
of the shared structures (template_db/pdb_seqres_shared_structures.fasta, >= 20 residues) as one
query file: the binary searches them one after the other, re-reading the database for each, as it
does given several queries; Foldline reads the database once for all of them.

Fairness: the database is read once before timing so both tools find it in the page cache; every
timed run is a fresh process (Foldline's time includes interpreter start and imports; the time of
its search alone, measured inside, is reported too); the two tools alternate, repeat after repeat, so
a busy spell of the shared machine hits both; medians are reported, with wall and CPU seconds (user +
system of the process and its workers: unlike wall time, not inflated by other load). Peak memory is
the largest resident set of any one process (Foldline: the parent or a worker), also measured on a
quarter-size database, and on that quarter padded back to full size with residue-shuffled decoys
(the same homologues, 4x the sequences) to show it does not grow with the database: what grows is
the hit list, as the binary's does. Hit sets are compared per query.

    .venv/bin/python bench/search.py [--n-sequences 100000] [--threads 2] [--repeats 5]
        [--multi-repeats 3] [--work-dir /tmp/foldline-bench-search]
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import os
import platform
import resource
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO.parent / "shared" / "data"
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
AMINO = b"ACDEFGHIKLMNPQRSTVWY"


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


def shared_records(seqdb: Path) -> list[tuple[str, str]]:
    """(name, sequence) of every source file in SOURCES, in order: what the databases are made from."""
    return [rec for name in SOURCES for rec in read_fasta(seqdb / name)]


def build_database(path: Path, n_sequences: int, seed: int, seqdb: Path) -> None:
    """N mutated copies of the shared sequences: 5-40 % substitutions and a few short indels each."""
    import numpy as np  # here, not at the top: the timed worker processes do not need it

    amino = np.frombuffer(AMINO, dtype=np.uint8)
    sources = shared_records(seqdb)
    rng = np.random.default_rng(seed)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        for i in range(n_sequences):
            name, seq = sources[rng.integers(len(sources))]
            arr = np.frombuffer(seq.encode(), dtype=np.uint8).copy()
            rate = rng.uniform(0.05, 0.40)
            sites = rng.random(arr.size) < rate
            arr[sites] = amino[rng.integers(len(amino), size=int(sites.sum()))]
            text = arr.tobytes().decode()
            for _ in range(rng.integers(0, 3)):  # short indels
                pos = int(rng.integers(len(text)))
                if rng.random() < 0.5:
                    text = text[:pos] + text[pos + int(rng.integers(1, 4)) :]
                else:
                    ins = amino[rng.integers(len(amino), size=int(rng.integers(1, 4)))].tobytes().decode()
                    text = text[:pos] + ins + text[pos:]
            out.write(f">mut{i:07d}_{name} copy {i} of {name}\n{text}\n")
    os.replace(tmp, path)


def pad_with_decoys(source: Path, path: Path, n_sequences: int, seed: int, seqdb: Path) -> None:
    """`source` followed by residue-shuffled shared sequences up to N: as many homologues, more sequences.

    A shuffle keeps the composition and length, so the decoys cost the filters what real sequences
    do, but they have no homology left and (almost) never pass the E-value threshold."""
    import numpy as np

    sources = [seq for _, seq in shared_records(seqdb)]
    rng = np.random.default_rng(seed + 1)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w") as out:
        text = source.read_text()
        out.write(text)
        for i in range(n_sequences - text.count(">")):  # one ">" per record: headers only
            residues = np.frombuffer(sources[rng.integers(len(sources))].encode(), dtype=np.uint8).copy()
            rng.shuffle(residues)
            out.write(f">decoy{i:07d} shuffled\n{residues.tobytes().decode()}\n")
    os.replace(tmp, path)


def shared_protein_chains(shared_data: Path) -> list[str]:
    """Unique protein chains of the shared structures, >= 20 residues, in file order."""
    seqres = shared_data / "template_db" / "pdb_seqres_shared_structures.fasta"
    chains: dict[str, None] = {}
    for record in seqres.read_text().split(">")[1:]:
        header, *lines = record.splitlines()
        sequence = "".join(lines)
        if "mol:protein" in header and len(sequence) >= 20:
            chains[sequence] = None
    return list(chains)


def run_child(cmd: list[str], work: Path) -> tuple[float, int, str, float]:
    """Run `cmd` in a fresh process; returns (wall seconds, its peak RSS in MiB, stdout, CPU seconds).

    CPU seconds (user + system, the child's workers included) do not depend on how busy a shared
    machine is, unlike wall time. The peak is that of the largest single process (child or worker),
    as GNU time reports it: a child forked from this Python process and measured by its own
    ru_maxrss would report this process's size if larger (the kernel keeps the high-water mark
    across exec)."""
    peak_file = work / "peak_kib"
    start = time.perf_counter()
    proc = subprocess.Popen(
        [shutil.which("time"), "-f", "%M", "-o", str(peak_file), *cmd], stdout=subprocess.PIPE, text=True
    )
    out = proc.stdout.read()
    _, status, usage = os.wait4(proc.pid, 0)  # reap it ourselves to get its (and its children's) rusage
    wall = time.perf_counter() - start
    if os.waitstatus_to_exitcode(status):
        raise RuntimeError(f"{cmd[0]} failed with exit code {os.waitstatus_to_exitcode(status)}")
    peak = int(peak_file.read_text().split()[-1]) // 1024
    return wall, peak, out, usage.ru_utime + usage.ru_stime


def run_binary(queries: Path, db: Path, threads: int, work: Path) -> dict:
    """The binary on every query of `queries`; hits as {query name: set of target names}."""
    from model.search.jackhmmer import JackhmmerSettings

    tbl, sto = work / "binary.tbl", work / "binary.sto"
    cmd = ["jackhmmer", "-o", os.devnull, "-A", str(sto), "--noali", "--tblout", str(tbl)]
    cmd += ["--cpu", str(threads), *JackhmmerSettings().binary_flags(), str(queries), str(db)]
    wall, peak, _, cpu = run_child(cmd, work)
    hits: dict[str, set[str]] = {}
    for line in tbl.read_text().splitlines():
        if not line.startswith("#"):
            fields = line.split()
            hits.setdefault(fields[2], set()).add(fields[0])
    return {"wall": wall, "cpu": cpu, "peak": peak, "hits": hits}


def run_foldline(queries: Path, db: Path, threads: int, work: Path) -> dict:
    """Foldline in a fresh process: whole-process wall and CPU, peak RSS, hits per query, and the
    wall and CPU seconds of the search alone, measured inside the process."""
    cmd = [sys.executable, __file__, "--worker", str(db), "--queries-file", str(queries)]
    wall, peak, out, cpu = run_child([*cmd, "--threads", str(threads)], work)
    result = json.loads(out)
    hits = {name: set(names) for name, names in result["hits"].items()}
    return {"wall": wall, "cpu": cpu, "peak": peak, "hits": hits, **result["search"]}


def worker(db: Path, queries: Path, threads: int) -> None:
    sys.path.insert(0, str(REPO))
    from model.search.jackhmmer import search_proteins

    records = read_fasta(queries)
    usage = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    start = time.perf_counter()
    results = search_proteins([seq for _, seq in records], db, threads=threads)
    wall = time.perf_counter() - start
    after = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    cpu = sum(b.ru_utime + b.ru_stime - a.ru_utime - a.ru_stime for a, b in zip(usage, after, strict=True))
    hits = {name: r.hit_names for (name, _), r in zip(records, results, strict=True)}
    print(json.dumps({"hits": hits, "search": {"search_wall": wall, "search_cpu": cpu}}))


def median(values: list[float]) -> float:
    return round(statistics.median(values), 3)


def compare(binary: dict, ours: dict, names: list[str]) -> dict:
    """Hit agreement per query (a query without hits is absent from the binary's table)."""
    same = [binary["hits"].get(n, set()) == ours["hits"].get(n, set()) for n in names]
    return {
        "queries": len(names),
        "queries_with_identical_hits": sum(same),
        "binary_hits": sum(len(binary["hits"].get(n, ())) for n in names),
        "foldline_hits": sum(len(ours["hits"].get(n, ())) for n in names),
    }


def scenario(queries: Path, db: Path, threads: int, repeats: int, work: Path, warm_up: bool = True) -> dict:
    """An untimed run of each tool (page cache, interpreter files), then `repeats` alternating timed
    runs; medians."""
    names = [name for name, _ in read_fasta(queries)]
    if warm_up:
        run_binary(queries, db, threads, work)
        run_foldline(queries, db, threads, work)
    binary, ours = [], []
    for _ in range(repeats):
        binary.append(run_binary(queries, db, threads, work))
        ours.append(run_foldline(queries, db, threads, work))
    b_wall, o_wall = median([r["wall"] for r in binary]), median([r["wall"] for r in ours])
    b_cpu, o_cpu = median([r["cpu"] for r in binary]), median([r["cpu"] for r in ours])
    o_search = median([r["search_wall"] for r in ours])
    return {
        "queries": len(names),
        "threads": threads,
        "binary": {"wall": b_wall, "cpu": b_cpu, "walls": [round(r["wall"], 2) for r in binary]},
        "foldline": {
            "wall": o_wall,
            "cpu": o_cpu,
            "walls": [round(r["wall"], 2) for r in ours],
            "search_wall": o_search,
            "search_cpu": median([r["search_cpu"] for r in ours]),
        },
        "speedup_wall": round(b_wall / o_wall, 2),
        "speedup_wall_search_only": round(b_wall / o_search, 2),
        "speedup_cpu": round(b_cpu / o_cpu, 2),
        "peak_rss_mib": {"binary": binary[0]["peak"], "foldline": ours[0]["peak"]},
        "hits": compare(binary[0], ours[0], names),
    }


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--n-sequences", type=int, default=100_000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--repeats", type=int, default=5, help="timed runs of each tool, single query")
    parser.add_argument("--multi-repeats", type=int, default=3, help="timed runs, all shared chains")
    parser.add_argument("--work-dir", type=Path, default=Path("/tmp/foldline-bench-search"))
    parser.add_argument(
        "--shared-data",
        type=Path,
        default=SHARED_DATA,
        help="folder with seqdb/ and template_db/ (default: ../shared/data)",
    )
    parser.add_argument("--worker", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries-file", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.queries_file, args.threads)
        return
    if shutil.which("jackhmmer") is None:
        sys.exit("bench/search.py: HMMER's jackhmmer binary is not on PATH (make sysdeps)")
    if shutil.which("time") is None:
        sys.exit("bench/search.py: GNU time (Debian package `time`) is not on PATH; it measures peak memory")
    sys.path.insert(0, str(REPO))
    from model.search.databases import prepare_database

    work = args.work_dir
    work.mkdir(parents=True, exist_ok=True)
    single = work / "query_102m.fa"
    single.write_text(f">102m\n{QUERY_102M}\n")
    multi = work / "queries_shared.fa"
    multi.write_text(
        "".join(f">chain{i:03d}\n{seq}\n" for i, seq in enumerate(shared_protein_chains(args.shared_data)))
    )
    db = work / f"db_{args.n_sequences}_{args.seed}.fa"
    small = work / f"db_{args.n_sequences // 4}_{args.seed}.fa"
    padded = work / f"db_{args.n_sequences // 4}_{args.seed}_padded_{args.n_sequences}.fa"
    for path, n in ((db, args.n_sequences), (small, args.n_sequences // 4), (padded, args.n_sequences)):
        if not path.is_file():
            start = time.perf_counter()
            if path == padded:
                pad_with_decoys(small, path, n, args.seed, args.shared_data / "seqdb")
            else:
                build_database(path, n, args.seed, args.shared_data / "seqdb")
            print(
                f"built {path.name}: {n} sequences, {path.stat().st_size / 1e6:.1f} MB "
                f"in {time.perf_counter() - start:.1f} s",
                file=sys.stderr,
            )
        prepare_database(path, write_sidecar=True)  # what the `databases` rule does once
        path.read_bytes()  # into the page cache: both tools read a warm file

    load_before = os.getloadavg()
    report = {
        "machine": f"{platform.node()} {platform.machine()} {os.cpu_count()} cpus",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "binary_version": subprocess.run(["jackhmmer", "-h"], capture_output=True, text=True).stdout.split(
            "\n"
        )[1],
        "pyhmmer": importlib.metadata.version("pyhmmer"),
        "database": {"sequences": args.n_sequences, "bytes": db.stat().st_size, "seed": args.seed},
    }
    report["single_query"] = scenario(single, db, args.threads, args.repeats, work)
    report["single_query_1_thread"] = scenario(single, db, 1, args.repeats, work)
    for name, path in (("quarter_db", small), ("quarter_db_padded_with_decoys", padded)):
        run = run_foldline(single, path, args.threads, work)
        report[f"foldline_{name}"] = {"peak_rss_mib": run["peak"], "hits": len(run["hits"]["102m"])}
    # already warm from the single-query runs; each of these runs takes tens of seconds
    report["all_shared_chains"] = scenario(multi, db, args.threads, args.multi_repeats, work, warm_up=False)
    report["load_average_1_5_15_min"] = {"before": load_before, "after": os.getloadavg()}
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
