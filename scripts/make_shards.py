"""Split prediction targets into shards balanced by token count (one GPU job per shard).

The split is computed from the targets table alone (token counts known at parse time), so the
workflow's DAG is fully known before any job runs and no checkpoint rule is needed. The same table
and settings always give the same shards. `read_target_table` is how the workflow reads the table at
parse time: every target parsed and sized within config `limits`, a bad one turned into its note.

Standalone:  python scripts/make_shards.py --inputs targets.csv --shards 4 --out shards.tsv
As a rule:   writes the shard plan (snakemake.params.plan, .tokens) to snakemake.output[0].
"""

import argparse
import heapq
import math
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from model.fileio import write_text_atomic

# A ligand whose size cannot be looked up (a user CCD code) still costs some tokens: a drug-like ligand's.
_FALLBACK_LIGAND_TOKENS = 30
# Device memory one token pair costs at the largest sizes: about five FP32 copies of the 128-channel
# pair representation live at once in the chunked pair stack (model/infer/precision.py chunks from
# 1,537 tokens), so 80 GiB holds about 5,800 tokens.
PAIR_BYTES_PER_TOKEN_PAIR = 5 * 128 * 4


def token_limit(device_memory_gib: float) -> int:
    """The most tokens one target may have on a device with this much memory (config `limits`)."""
    return math.isqrt(int(device_memory_gib * 2**30) // PAIR_BYTES_PER_TOKEN_PAIR)


def _entity_error(target, index: int, field: str, reason: str):
    from model.data.inputs import TargetError

    entity = target.entities[index]
    return TargetError(
        target.target_id, reason, field=field, entity=index + 1, kind=entity.kind, chains=entity.chain_ids
    )


def _molecule_heavy_atoms(target, index: int) -> int:
    """Heavy atoms of a SMILES or file ligand, from the molecule RDKit parses."""
    from rdkit import Chem, rdBase

    from model.data.conformers import read_ligand_file

    entity = target.entities[index]
    if entity.smiles is not None:
        with rdBase.BlockLogs():
            mol = Chem.MolFromSmiles(entity.smiles)
        if mol is None:
            raise _entity_error(target, index, "smiles", f"RDKit cannot parse SMILES {entity.smiles!r}")
        return mol.GetNumHeavyAtoms()
    try:
        return read_ligand_file(entity.ligand_file).GetNumHeavyAtoms()
    except (ValueError, OSError) as exc:
        raise _entity_error(target, index, "ligand_file", str(exc)) from None


def estimate_tokens(target, ccd=None, max_ligand_atoms: int | None = None) -> int:
    """AF3 §2.6 token count of a `model.data.inputs.Target` without building its structure.

    Standard polymer residues are one token; ligands, ions and modified residues one token per
    heavy atom (looked up in `ccd` when given, else a typical size; SMILES and file ligands from their
    parsed molecule). A ligand of more than `max_ligand_atoms` heavy atoms, or one RDKit cannot read,
    is a TargetError naming the entity.
    """

    def heavy_atoms(code: str) -> int:
        comp = ccd.get(code) if ccd is not None else None
        return comp.num_heavy_atoms if comp is not None else _FALLBACK_LIGAND_TOKENS

    total = 0
    for index, entity in enumerate(target.entities):
        copies = len(entity.chain_ids)
        if entity.kind in ("protein", "rna", "dna"):
            n = len(entity.sequence)
            # a modified residue is atomised: its heavy atoms replace the residue's one token
            n += sum(heavy_atoms(code) - 1 for _, code in entity.modifications)
        elif entity.kind == "ion":
            n = 1
        else:
            if entity.ccd_codes is not None:
                n, field = sum(heavy_atoms(code) for code in entity.ccd_codes), "ccd_codes"
            else:
                n = _molecule_heavy_atoms(target, index)
                field = "smiles" if entity.smiles is not None else "ligand_file"
            if max_ligand_atoms is not None and n > max_ligand_atoms:
                reason = f"{n} heavy atoms, more than limits.ligand_heavy_atoms ({max_ligand_atoms})"
                raise _entity_error(target, index, field, reason)
        total += copies * n
    return total


@dataclass(frozen=True)
class TargetTable:
    """What the workflow knows of its targets at parse time: the good ones, the notes of the bad
    ones (target -> one line) and every good target's token count."""

    targets: dict
    invalid: dict[str, str]
    tokens: dict[str, int]


def read_target_table(
    inputs: str | Path, allowed_roots: Iterable[str | Path] | None, ccd, limits: Mapping
) -> TargetTable:
    """Parse the targets table (syntax only) and size every target, within config `limits`.

    Total: whatever is wrong with one target (a parse error, a molecule RDKit cannot read, a
    ligand or target over its limit, an error nobody foresaw) becomes that target's note. Raises
    TargetError only when the table itself is unusable.
    """
    from model.data.inputs import InputLimits, TargetError, load_targets, unexpected

    input_limits = InputLimits(max_file_mb=limits["input_file_mb"], max_json_depth=limits["json_depth"])
    targets, errors = load_targets(inputs, allowed_roots=allowed_roots, limits=input_limits)
    invalid = {e.target_id: str(e) for e in errors}
    max_tokens = limits["tokens"] or token_limit(limits["device_memory_gib"])
    where = (
        "limits.tokens" if limits["tokens"] else f"limits.device_memory_gib = {limits['device_memory_gib']:g}"
    )
    good, tokens = {}, {}
    for target in targets:
        try:
            n = estimate_tokens(target, ccd, limits["ligand_heavy_atoms"])
            if n > max_tokens:
                raise TargetError(
                    target.target_id,
                    f"{n} tokens, more than the limit of {max_tokens} ({where})",
                    field="tokens",
                )
        except TargetError as exc:
            invalid[target.target_id] = str(exc)
        except Exception as exc:  # a target that cannot be sized fails alone
            invalid[target.target_id] = str(TargetError(target.target_id, unexpected(exc)))
        else:
            good[target.target_id], tokens[target.target_id] = target, n
    return TargetTable(good, invalid, tokens)


def assign_shards(tokens: Mapping[str, int], n_shards: int, tokens_per_shard: int) -> list[list[str]]:
    """Longest-processing-time split of targets into shards with near-equal token sums.

    `n_shards` > 0 fixes the number of shards (at most one per target); 0 derives it as
    ceil(total tokens / tokens_per_shard). Targets are placed largest first into the lightest shard
    (ties by target id and shard index), so the result depends only on the inputs. Members of each
    shard are returned sorted by target id; empty shards are never returned.
    """
    if not tokens:
        return []
    if n_shards <= 0:
        n_shards = math.ceil(sum(tokens.values()) / tokens_per_shard)
    n_shards = max(1, min(n_shards, len(tokens)))
    heap = [(0, i) for i in range(n_shards)]
    shards: list[list[str]] = [[] for _ in range(n_shards)]
    for target_id in sorted(tokens, key=lambda t: (-tokens[t], t)):
        load, i = heapq.heappop(heap)
        shards[i].append(target_id)
        heapq.heappush(heap, (load + tokens[target_id], i))
    return [sorted(s) for s in shards if s]


def plan_shards(
    tokens: Mapping[str, int], seeds: Mapping[str, tuple[int, ...]], n_shards: int, tokens_per_shard: int
) -> dict[str, tuple[tuple[int, ...], list[str]]]:
    """Shards "shard-000", ... -> (model seeds, targets): one prediction job runs one seed set, so
    targets are grouped by their seeds first and each group is split by `assign_shards`. With
    `n_shards` > 0 the shards are shared out between the groups in proportion to their tokens (at
    least one each)."""
    groups: dict[tuple[int, ...], dict[str, int]] = {}
    for target_id in sorted(tokens):
        groups.setdefault(tuple(seeds[target_id]), {})[target_id] = tokens[target_id]
    total = sum(tokens.values()) or 1
    plan: dict[str, tuple[tuple[int, ...], list[str]]] = {}
    for seed_set in sorted(groups):
        group = groups[seed_set]
        n = max(1, round(n_shards * sum(group.values()) / total)) if n_shards > 0 else 0
        for members in assign_shards(group, n, tokens_per_shard):
            plan[f"shard-{len(plan):03d}"] = (seed_set, members)
    return plan


def write_plan(
    path: str | Path, plan: Mapping[str, tuple[tuple[int, ...], list[str]]], tokens: Mapping[str, int]
) -> None:
    """Write `shard<TAB>target_id<TAB>tokens<TAB>seeds` rows (sorted), atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    lines = ["shard\ttarget_id\ttokens\tseeds"]
    lines += [
        f"{name}\t{t}\t{tokens[t]}\t{' '.join(map(str, plan[name][0]))}"
        for name in sorted(plan)
        for t in plan[name][1]
    ]
    write_text_atomic(path, "\n".join(lines) + "\n")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--inputs", required=True, help="targets.csv")
    parser.add_argument("--shards", type=int, default=0, help="number of shards (0: use --tokens-per-shard)")
    parser.add_argument("--tokens-per-shard", type=int, default=4096)
    parser.add_argument("--seeds", type=int, nargs="+", default=[1], help="seeds of targets that name none")
    parser.add_argument("--ccd", default="", help="components.cif overriding biotite's CCD")
    parser.add_argument("--config", type=Path, default=Path("config/config.yaml"), help="its `limits`")
    parser.add_argument("--out", required=True, help="shard plan TSV")
    args = parser.parse_args(argv)

    import yaml

    from model.data.ccd import load_ccd

    limits = yaml.safe_load(args.config.read_text())["limits"]
    table = read_target_table(args.inputs, None, load_ccd(args.ccd or None), limits)
    for note in table.invalid.values():
        print(f"skipped: {note}", file=sys.stderr)
    seeds = {t: target.seeds or tuple(args.seeds) for t, target in table.targets.items()}
    plan = plan_shards(table.tokens, seeds, args.shards, args.tokens_per_shard)
    write_plan(args.out, plan, table.tokens)
    return 0


if "snakemake" in globals():
    write_plan(snakemake.output[0], snakemake.params.plan, snakemake.params.tokens)  # noqa: F821
elif __name__ == "__main__":
    sys.exit(main())
