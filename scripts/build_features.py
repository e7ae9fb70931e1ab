"""Build the HDF5 feature file of prediction targets or training entries.

Prediction target(s), from a targets.csv or an AF3/Protenix job JSON:
    build_features.py --inputs targets.csv --target-id T [--msa-manifest T.json]
        [--template-dir results/templates] --ccd "" --out results/features/T.h5 --failed-dir results/failed
    build_features.py --inputs targets.csv --out-dir results/features --failed-dir results/failed
One shard of the workflow (the `build_features` rule; the shard's targets and their searched MSAs as
inline JSON {target: {"chains": {chain: a3m}, "pair": bool}}, "pair" = pair the chains by species):
    build_features.py --inputs targets.csv --shard '{...}' --template-dir results/templates
        [--template-mmcif-dir pdb_mmcif --template-max-date 2021-09-30 --max-templates 4]
        --out-dir results/features --failed-dir results/failed --status results/features/shards/S.tsv
Training entries (with ground truth; MSAs from --msa-dir in the Protenix layout, optional):
    build_features.py --mmcif 102m.cif.gz [more.cif ...] [--msa-dir ../shared/data/msa]
        --out-dir results/features/train --failed-dir results/failed/train

A bad target writes {failed-dir}/{target}.txt (one-line reason) and the others go on. With one
--target-id, or with --status (a row per target: target<TAB>ok<TAB>h5 or target<TAB>failed<TAB>reason,
written last), the exit status is 0 when every target got its h5 or failure file (the workflow's
summary reports failures); in batch mode it is 1 when any target failed, after printing the failures.
An existing valid h5 with the same content hash is kept ("cached"), so rerunning a shard featurizes
only its changed targets. Also runs as a Snakemake rule script (`snakemake` object: input.mmcif,
output[0], params.*).
"""

# no `from __future__ import annotations`: Snakemake's `script:` prepends a preamble to this file
import argparse
import datetime
import json
import multiprocessing
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

if __package__ in (None, ""):  # run as a script: make the repository's `model` importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from model.data import store  # noqa: E402
from model.data.msa import MsaInput, parse_a3m  # noqa: E402
from model.fileio import error_line, write_failure, write_text_atomic  # noqa: E402


@dataclass
class Job:
    """One unit of work: a prediction target or a training entry."""

    name: str
    out: Path
    target: object | None = None  # inputs.Target
    mmcif: Path | None = None
    msa_dir: Path | None = None  # training entries: {msa_dir}/{entry}_{entity or chain}/*.a3m
    error: str | None = None  # a bad input found while reading, reported as this job's failure
    msas: dict[str, MsaInput] = field(default_factory=dict)
    templates: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)
    hash_parts: list[bytes | str] = field(default_factory=list)
    # training shards: (msas, templates) per chain name from the parsed structure (its entities' store files)
    structure_inputs: Callable | None = None


def _read_manifest(path: Path | None) -> dict:
    """A target's MSA manifest: {"chains": {chain: a3m path | {"unpaired": p, "paired": p}},
    optional "templates": {chain: npz path}, optional "pair": true (read the chains' searched
    UniProt rows, which the featurizer pairs by species: model.data.msa.pair_by_species)}."""
    if path is None or str(path) == "":
        return {}
    return json.loads(Path(path).read_text())


def _load_templates(path: Path) -> dict[str, np.ndarray]:
    from model.data.features import TEMPLATE_FEATURES

    with np.load(path) as data:
        return {name: data[name] for name in TEMPLATE_FEATURES if name in data}


def _a3m_text(rows: list[tuple[str, str]]) -> str:
    return "".join(f">{description}\n{sequence}\n" for description, sequence in rows)


def attach_inputs(
    job: Job, manifest: dict, template_dir: Path | None, template_hits: dict | None = None
) -> None:
    """Per-chain MSAs and templates of a target. MSAs: the entity's own (AF3 `unpairedMsa`/`pairedMsa`,
    model.data.from_target.user_msas), else the manifest's searched a3m (and its UniProt hits,
    `.paired.a3m`, when the manifest says "pair"). Templates: the entity's own when it sets
    `templates` (`[]`: none) or `templatesPath` (a template search's hits, made templates with
    `template_hits`, user_templates' keyword arguments; from_target.user_templates), else the manifest's or
    {template_dir}/{molecule}/{sha}.npz of its searched a3m. Store files are verified against their
    checksums first (model.search.entries: a corrupt one is removed, so the next run searches it)."""
    from model.data.from_target import user_msas, user_templates
    from model.search.entries import check_entry, read_entry

    chains = manifest.get("chains", {})
    searched_paired = {}
    if manifest.get("pair"):
        from model.search.store import paired_msa_path

        # each chain's own UniProt hits; the featurizer pairs them by species (model.data.msa)
        for chain, entry in chains.items():
            searched_paired[chain] = read_entry(
                paired_msa_path(Path(entry if isinstance(entry, str) else entry["unpaired"]))
            )
    given_msas, given_templates = user_msas(job.target), user_templates(job.target, **(template_hits or {}))
    for entity in job.target.entities:
        for chain in entity.chain_ids:
            if chain in given_msas:
                msa = given_msas[chain]
                unpaired, paired = _a3m_text(msa.unpaired), _a3m_text(msa.paired)
            else:
                unpaired = paired = None
                if chain in chains:
                    entry = chains[chain]
                    entry = {"unpaired": entry} if isinstance(entry, str) else entry
                    unpaired = read_entry(entry["unpaired"]) if entry.get("unpaired") else None
                    paired = read_entry(entry["paired"]) if entry.get("paired") else None
                    paired = searched_paired.get(chain, paired)
                msa = MsaInput(parse_a3m(unpaired or ""), parse_a3m(paired or ""))
            if unpaired or paired:
                job.msas[chain] = msa
                job.hash_parts += [f"msa:{chain}", unpaired or "", paired or ""]
            if chain in given_templates:
                job.templates[chain] = given_templates[chain]
                job.hash_parts += [f"templates:{chain}"]
                job.hash_parts += [
                    given_templates[chain][name].tobytes() for name in sorted(given_templates[chain])
                ]
                continue
            template_path = manifest.get("templates", {}).get(chain)
            if template_path is None and template_dir is not None and chain in chains:
                a3m = chains[chain] if isinstance(chains[chain], str) else chains[chain].get("unpaired", "")
                candidate = template_dir / Path(a3m).parent.name / (Path(a3m).stem + ".npz")
                template_path = candidate if candidate.is_file() else None
            if template_path is not None:
                check_entry(template_path)
                job.templates[chain] = _load_templates(Path(template_path))
                job.hash_parts += [f"templates:{chain}", Path(template_path).read_bytes()]


MSA_SUFFIXES = ("", ".gz", ".xz")


def entry_msa_files(msa_dir: Path, entry: str) -> list[Path]:
    """The a3m files of a training entry in the Protenix layout (plain or compressed), sorted."""
    return sorted(p for s in MSA_SUFFIXES for p in msa_dir.glob(f"{entry}_*/*.a3m{s}"))


def entry_msas(structure, entry: str, msa_dir: Path) -> dict[str, MsaInput]:
    """Per polymer chain: {msa_dir}/{entry}_{entity id or author chain}/non_pairing.a3m (unpaired)
    and pairing.a3m (paired), each plain, .gz or .xz, as the shared data and Protenix lay them out."""
    out = {}
    for chain, name in enumerate(structure.chain_name.tolist()):
        if structure.chain_type[chain] not in ("protein", "rna", "dna"):
            continue
        for key in (structure.chain_entity_id[chain], structure.chain_auth_name[chain]):
            folder = msa_dir / f"{entry}_{key}"
            unpaired, paired = (
                next((f for s in MSA_SUFFIXES if (f := folder / f"{stem}.a3m{s}").is_file()), None)
                for stem in ("non_pairing", "pairing")
            )
            if unpaired or paired:
                out[name] = MsaInput.from_files(unpaired, paired)
                break
    return out


def content_hash(job: Job, ccd_release: str, seed: int) -> str:
    """What the features depend on: the featurizer's source, the CCD, the seed and the inputs' content
    (file contents, never their paths: a moved project keeps its features)."""
    if job.mmcif is not None:
        source: list[bytes | str] = ["mmcif", job.mmcif.read_bytes()]
    else:
        source = ["target", store.input_key(job.target)]
    head = [f"featurizer {store.source_digest('data', 'search')}", ccd_release, f"seed {seed}"]
    return store.content_hash([*head, *source, *job.hash_parts])


def build(
    job: Job, ccd, seed: int, failed_dir: Path, assembly: str | None, compress: bool = True
) -> tuple[str, str]:
    """Featurize one job; returns ("ok" | "cached" | "failed", detail)."""
    failed = failed_dir / f"{job.name}.txt"
    try:
        if job.error is not None:
            raise ValueError(job.error)
        digest = content_hash(job, ccd.release, seed)
        if store.is_valid(job.out, expected_hash=digest):
            failed.unlink(missing_ok=True)
            return "cached", str(job.out)
        if job.mmcif is not None:
            from model.data.structure import parse_mmcif

            structure = parse_mmcif(job.mmcif, ccd, assembly=assembly)
            if job.msa_dir is not None:
                job.msas = entry_msas(structure, job.name, job.msa_dir)
            elif job.structure_inputs is not None:
                job.msas, job.templates = job.structure_inputs(structure)
        else:
            from model.data.from_target import structure_from_target

            structure = structure_from_target(job.target, ccd)
        structure.name = structure.name or job.name
        from model.data.features import featurize

        truth = job.mmcif is not None
        result = featurize(structure, ccd, job.msas or None, job.templates or None, seed, with_truth=truth)
        attrs = {**result.attrs, "target_id": job.name, "content_hash": digest, "ccd_release": ccd.release}
        if truth:  # what the training filters read (AF3 §2.5.4); "" = not in the header (e.g. NMR)
            attrs |= {
                "resolution": structure.resolution if structure.resolution is not None else "",
                "release_date": structure.release_date or "",
                "method": structure.method or "",
            }
        store.write_features(job.out, result.features, result.meta, attrs, compress=compress)
    except Exception as err:  # any failure is this target's, written down; the others go on
        return fail(job, failed_dir, error_line(err))
    failed.unlink(missing_ok=True)
    return "ok", str(job.out)


def fail(job: Job, failed_dir: Path, reason: str) -> tuple[str, str]:
    """Write the job's failure note (one line naming the target) in place of its h5."""
    line = write_failure(failed_dir, job.name, reason)
    job.out.unlink(missing_ok=True)
    return "failed", line


def _build_in_worker(send, job: Job, args: tuple) -> None:
    send.send(build(job, *args))


def build_with_time_limit(
    job: Job, ccd, seed: int, failed_dir: Path, assembly: str | None, compress: bool, seconds: float
) -> tuple[str, str]:
    """`build` in a forked worker process given `seconds` of wall time: a target that runs over (RDKit
    embedding a huge ligand, say) or kills its worker (out of memory) fails alone, with a note naming
    the limit; the shard goes on. The fork shares the loaded CCD; a killed worker's temp h5 is removed."""
    context = multiprocessing.get_context("fork")
    receive, send = context.Pipe(duplex=False)
    worker = context.Process(
        target=_build_in_worker, args=(send, job, (ccd, seed, failed_dir, assembly, compress)), daemon=True
    )
    worker.start()
    send.close()
    result, timed_out = None, not receive.poll(seconds)
    if not timed_out:
        try:
            result = receive.recv()
        except EOFError:  # the worker died before it answered
            pass
    if worker.is_alive():
        worker.kill()
    worker.join()
    receive.close()
    if result is not None:
        return result
    for leftover in job.out.parent.glob(f".{job.out.name}.*"):  # a killed atomic write's temp file
        leftover.unlink(missing_ok=True)
    if not timed_out:
        code = worker.exitcode
        how = f"signal {signal.Signals(-code).name}" if code < 0 else f"exit status {code}"
        return fail(job, failed_dir, f"featurization: the worker process died ({how}; out of memory?)")
    return fail(job, failed_dir, f"featurization: took longer than limits.featurize_seconds ({seconds:g} s)")


def make_jobs(args: argparse.Namespace) -> tuple[list[Job], list[str]]:
    """The jobs, plus input errors that name no target (a row without a usable target_id, an
    unreadable targets file in batch mode): they cannot get a failure file, so they are printed."""
    out_dir = Path(args.out_dir) if args.out_dir else None
    single = args.out is not None

    def out_path(name: str) -> Path:
        return Path(args.out) if single else out_dir / f"{name}.h5"

    if args.mmcif:
        msa_dir = Path(args.msa_dir) if args.msa_dir else None
        jobs = []
        for path in map(Path, args.mmcif):
            entry = path.name.split(".")[0]
            job = Job(name=entry, out=out_path(entry), mmcif=path, msa_dir=msa_dir)
            for a3m in entry_msa_files(msa_dir, entry) if msa_dir else []:
                job.hash_parts += [str(a3m.relative_to(msa_dir)), a3m.read_bytes()]
            jobs.append(job)
        return jobs, []
    from model.data.inputs import InputLimits, TargetError, load_targets

    roots = [Path(r) for r in args.allowed_root] or None
    given = {"max_file_mb": args.max_file_mb, "max_json_depth": args.json_depth}
    limits = InputLimits(**{key: value for key, value in given.items() if value is not None})
    try:
        targets, errors = load_targets(args.inputs, allowed_roots=roots, limits=limits)
    except (TargetError, OSError) as err:  # the file itself is unusable
        targets, errors = [], [TargetError(args.target_id, error_line(err))]
    jobs = [Job(name=t.target_id, out=out_path(t.target_id), target=t) for t in targets]
    jobs += [Job(name=e.target_id, out=out_path(e.target_id), error=str(e)) for e in errors if e.target_id]
    unnamed = [str(e) for e in errors if not e.target_id]
    wanted = [args.target_id] if args.target_id else sorted(args.shard) if args.shard else None
    if wanted is not None:
        found = {j.name: j for j in jobs}
        jobs = [found.get(name) or Job(name=name, out=out_path(name),
                                       error=f"target {name}: not found in {args.inputs}")
                for name in wanted]  # fmt: skip
    single_manifest = _read_manifest(args.msa_manifest)
    template_dir = Path(args.template_dir) if args.template_dir else None
    template_hits = None
    if args.template_mmcif_dir:
        template_hits = {
            "hit_mmcif_dir": Path(args.template_mmcif_dir),
            "max_date": datetime.date.fromisoformat(args.template_max_date),
            "max_templates": args.max_templates,
        }
    for job in jobs:
        if job.error is None:
            manifest = args.shard[job.name] if args.shard else single_manifest
            try:
                attach_inputs(job, manifest, template_dir, template_hits)
            except TargetError as err:
                job.error = str(err)
            except (OSError, ValueError, KeyError) as err:
                job.error = f"target {job.name}: MSA/template input: {error_line(err)}"
    return jobs, unnamed


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--inputs", help="targets.csv or an AF3/Protenix job JSON")
    source.add_argument("--mmcif", nargs="+", help="training entries (mmCIF, .cif or .cif.gz)")
    parser.add_argument("--target-id", help="featurize only this target of --inputs")
    parser.add_argument("--msa-manifest", help="the MSA manifest of the single --target-id (JSON file)")
    parser.add_argument(
        "--shard",
        type=json.loads,
        help='the targets to build, inline JSON {target: {"chains": ..., "pair": ...}}',
    )
    parser.add_argument("--msa-dir", help="training entries: {msa-dir}/{entry}_{entity|chain}/*.a3m")
    parser.add_argument("--template-dir", help="template features per sequence: {molecule}/{sha}.npz")
    parser.add_argument(
        "--template-mmcif-dir",
        help="mmCIFs of the template hits a job's templatesPath names (config databases)",
    )
    parser.add_argument("--template-max-date", help="latest release date of those templates (config search)")
    parser.add_argument(
        "--max-templates", type=int, help="templates kept from templatesPath hits (config search)"
    )
    parser.add_argument("--allowed-root", action="append", default=[], help="root that input paths may use")
    parser.add_argument("--ccd", default="", help="user components.cif over the built-in CCD ('' = none)")
    out = parser.add_mutually_exclusive_group(required=True)
    out.add_argument("--out", help="the h5 of the single target/entry")
    out.add_argument("--out-dir", help="folder for {target}.h5 of every target/entry")
    parser.add_argument("--failed-dir", required=True, help="folder for {target}.txt failure notes")
    parser.add_argument("--status", help="write target<TAB>ok|failed<TAB>h5|reason rows here (last)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the reference conformers")
    parser.add_argument(
        "--no-compress", action="store_true", help="skip gzip: ~2.5x the bytes, MSA loads ~2-3x faster"
    )
    parser.add_argument("--assembly", default="1", help="mmCIF assembly ('' = asymmetric unit)")
    parser.add_argument(
        "--featurize-seconds", type=float, help="wall time per target, each in its own worker (config limits)"
    )
    parser.add_argument("--max-file-mb", type=float, help="largest input file (config limits)")
    parser.add_argument("--json-depth", type=int, help="deepest JSON nesting (config limits)")
    args = parser.parse_args(argv)
    if args.out and (args.mmcif and len(args.mmcif) > 1 or args.inputs and not args.target_id):
        parser.error("--out needs exactly one target (--target-id) or one --mmcif; use --out-dir")
    if args.template_mmcif_dir and (args.template_max_date is None or args.max_templates is None):
        parser.error("--template-mmcif-dir needs --template-max-date and --max-templates")
    if args.shard is not None and (args.target_id or args.msa_manifest or not args.inputs):
        parser.error("--shard names the targets and MSAs: no --target-id/--msa-manifest; needs --inputs")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    failed_dir = Path(args.failed_dir)
    from model.data.ccd import load_ccd  # chemistry imports after --help

    ccd = load_ccd(args.ccd or None)
    results = []
    jobs, unnamed = make_jobs(args)
    for job in jobs:
        start = time.perf_counter()
        build_args = (job, ccd, args.seed, failed_dir, args.assembly or None, not args.no_compress)
        if args.featurize_seconds:
            status, detail = build_with_time_limit(*build_args, args.featurize_seconds)
        else:
            status, detail = build(*build_args)
        print(f"{job.name}\t{status}\t{time.perf_counter() - start:.2f}s\t{detail}", flush=True)
        results.append((job.name, status, detail))
    failures = [(name, detail) for name, status, detail in results if status == "failed"]
    failures += [("(no target id)", message) for message in unnamed]
    if failures:
        print(f"\n{len(failures)} of {len(results) + len(unnamed)} failed:", file=sys.stderr)
        for name, detail in failures:
            print(f"  {name}: {detail}", file=sys.stderr)
    if args.status:
        rows = [
            f"{name}\t{'ok' if status != 'failed' else status}\t{detail}\n"
            for name, status, detail in results
        ]
        write_text_atomic(args.status, "".join(rows))
    single = args.out is not None or args.status is not None
    return 0 if single or not failures else 1


def _snakemake_argv(smk) -> list[str]:
    """Command line equivalent of a Snakemake rule's input/output/params."""
    argv = ["--out", str(smk.output[0]), "--failed-dir", str(smk.params.failed_dir)]
    if "mmcif" in smk.input.keys():
        argv += ["--mmcif", str(smk.input.mmcif)]
    else:
        argv += ["--inputs", str(smk.params.inputs), "--target-id", str(smk.wildcards.target)]
    if "manifest" in smk.input.keys():
        argv += ["--msa-manifest", str(smk.input.manifest)]
    for key in ("msa_dir", "template_dir", "ccd", "seed", "assembly"):
        if key in smk.params.keys():
            argv += [f"--{key.replace('_', '-')}", str(smk.params[key])]
    return argv


if __name__ == "__main__":
    if "snakemake" in globals():
        sys.exit(main(_snakemake_argv(snakemake)))  # noqa: F821
    sys.exit(main())
