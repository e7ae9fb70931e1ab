"""Split prediction targets into shards balanced by token count (one GPU job per shard).

The split is computed from the targets table alone (token counts known at parse time), so the
workflow's DAG is fully known before any job runs and no checkpoint rule is needed. The same table
and settings always give the same shards.

Standalone:  python scripts/make_shards.py --inputs targets.csv --shards 4 --out shards.tsv
As a rule:   writes the shard plan (snakemake.params.plan, .tokens) to snakemake.output[0].
"""

import argparse
import heapq
import math
import sys
from collections.abc import Mapping
from pathlib import Path

from model.fileio import write_text_atomic

# A ligand whose size cannot be looked up still costs some tokens; a typical drug-like ligand.
_FALLBACK_LIGAND_TOKENS = 30


def _smiles_heavy_atoms(smiles: str) -> int:
    from rdkit import Chem

    mol = Chem.MolFromSmiles(smiles)
    return mol.GetNumHeavyAtoms() if mol is not None else _FALLBACK_LIGAND_TOKENS


def estimate_tokens(target, ccd=None) -> int:
    """AF3 §2.6 token count of a `model.data.inputs.Target` without building its structure.

    Standard polymer residues are one token; ligands, ions and modified residues one token per
    heavy atom (looked up in `ccd` when given, else a typical size).
    """

    def heavy_atoms(code: str) -> int:
        comp = ccd.get(code) if ccd is not None else None
        return comp.num_heavy_atoms if comp is not None else _FALLBACK_LIGAND_TOKENS

    total = 0
    for entity in target.entities:
        copies = len(entity.chain_ids)
        if entity.kind in ("protein", "rna", "dna"):
            n = len(entity.sequence)
            # a modified residue is atomised: its heavy atoms replace the residue's one token
            n += sum(heavy_atoms(code) - 1 for _, code in entity.modifications)
        elif entity.kind == "ion":
            n = 1
        elif entity.smiles:
            n = _smiles_heavy_atoms(entity.smiles)
        else:
            n = sum(heavy_atoms(code) for code in entity.ccd_codes)
        total += copies * n
    return total


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
    parser.add_argument("--out", required=True, help="shard plan TSV")
    args = parser.parse_args(argv)

    from model.data.ccd import load_ccd
    from model.data.inputs import load_targets

    targets, errors = load_targets(args.inputs)
    for error in errors:
        print(f"skipped: {error}", file=sys.stderr)
    ccd = load_ccd(args.ccd or None)
    tokens = {t.target_id: estimate_tokens(t, ccd) for t in targets}
    seeds = {t.target_id: t.seeds or tuple(args.seeds) for t in targets}
    write_plan(args.out, plan_shards(tokens, seeds, args.shards, args.tokens_per_shard), tokens)
    return 0


if "snakemake" in globals():
    write_plan(snakemake.output[0], snakemake.params.plan, snakemake.params.tokens)  # noqa: F821
elif __name__ == "__main__":
    sys.exit(main())
