"""Template search and template features (AF3 supplement §2.4; data/templates.py, pipeline.py).

1. hmmbuild (hand architecture: every query column is a match state) from the query's unpaired MSA;
2. hmmsearch of that profile against pdb_seqres with AF3's settings (F1 = F2 = F3 = 0.1,
   E = incE = domE = incdomE = 100), protein chains only;
3. AF3's filters in E-value order: release date after the cutoff (config date; for a training entry
   also 60 days before its own release), aligned residues <= 10 % of the query, a hit that is an
   exact subsequence of the query and longer than 95 % of it (ground-truth leakage), fewer than 10
   residues, no resolved aligned residue, a duplicate of an earlier template; keep the top 4;
4. features from the hit's mmCIF (gemmi; first model, first altloc) at the query's columns, in the
   template-group format of model/data/feature_spec.py: template_restype, template_pseudo_beta(+mask),
   template_backbone (N, CA, C) (+mask), each [K, L_query, ...].
"""

from __future__ import annotations

import datetime
import io
import logging
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import gemmi
import numpy as np
from pyhmmer import easel, plan7

from model.data.constants import GAP, ONE_TO_THREE_PROTEIN, RESTYPE_INDEX, UNKNOWN_PROTEIN
from model.data.feature_spec import FEATURES
from model.fileio import write_bytes_atomic
from model.search.a3m import Row
from model.search.hmmsearch import (
    DEFAULT_BLOCK_RESIDUES,
    as_written,
    build_profiles,
    database_z,
    flushed_denormals,
    search_database_many,
)
from model.search.jackhmmer import PROTEIN_ALPHABET

log = logging.getLogger(__name__)

DAYS_BEFORE_QUERY_DATE = 60
_HIT_NAME = re.compile(r"^(?P<pdb_id>[A-Za-z0-9]{4,})_(?P<chain>\S+)$")
_HIT_LENGTH = re.compile(r"\blength:(\d+)")


@dataclass(frozen=True)
class TemplateSettings:
    """hmmsearch and filter settings (AF3's)."""

    f1: float = 0.1
    f2: float = 0.1
    f3: float = 0.1
    e_value: float = 100.0
    max_subsequence_ratio: float | None = 0.95  # None: keep exact copies of the query (tests, demos)
    min_align_ratio: float = 0.1
    min_hit_length: int = 10
    deduplicate: bool = True
    max_templates: int = 4

    def pipeline_options(self, database: str | Path) -> dict:
        e = self.e_value
        return dict(
            F1=self.f1, F2=self.f2, F3=self.f3, E=e, incE=e, domE=e, incdomE=e, Z=database_z(database)
        )


@dataclass
class TemplateHit:
    """One hmmsearch domain against a pdb_seqres chain."""

    pdb_id: str
    chain: str  # author chain id, as pdb_seqres names it
    evalue: float
    full_length: int  # seqres length
    query_to_hit: dict[int, int]  # 0-based query column -> 0-based seqres index
    matching_sequence: str  # the hit's aligned seqres segment, gaps removed

    @property
    def name(self) -> str:
        return f"{self.pdb_id}_{self.chain}"


@dataclass
class TemplateChain:
    """What a hit's mmCIF gives: its release date and, per seqres position, residue and atoms."""

    release_date: datetime.date | None  # None: a user template (AF3 `templates`), never date-filtered
    res_names: list[str]  # [L_seqres] CCD codes from entity_poly_seq
    coords: dict[str, np.ndarray] = field(default_factory=dict)  # atom -> [L_seqres, 3] (NaN = absent)


def stockholm_columns(rows: list[Row]) -> tuple[list[str], str]:
    """a3m rows as AF3 hands them to hmmbuild (parsers.convert_a3m_to_stockholm): each run of inserted
    residues becomes columns of their own, left-justified and padded with gaps in every other row, all
    upper case; the reference line marks query columns `x`, insert columns `.`. Returns (rows, RF)."""
    split = []  # per row: [insertion before column 0, column 0, insertion before column 1, ...]
    for i, (_, row) in enumerate(rows):
        parts, insertion = [], ""
        for char in row:
            if char.islower():
                insertion += char
            else:
                parts += [insertion, char]
                insertion = ""
        split.append([*parts, insertion])
        if len(split[-1]) != len(split[0]):
            raise ValueError(
                f"template search: MSA row {i} has {len(parts) // 2} columns, query has {len(split[0]) // 2}"
            )
    widths = [max(len(parts[k]) for parts in split) for k in range(0, len(split[0]), 2)]
    aligned = []
    for parts in split:
        text = []
        for k, width in enumerate(widths):
            text.append(parts[2 * k].upper().ljust(width, "-"))
            if 2 * k + 1 < len(parts):
                text.append(parts[2 * k + 1].replace(".", "-"))
        aligned.append("".join(text))
    reference = "x".join("." * width for width in widths)
    return aligned, reference


def build_profile(rows: list[Row]) -> plan7.HMM:
    """hmmbuild --hand of the MSA as AF3 writes it (`stockholm_columns`): every query column a match
    state, inserted residues in insert columns; the profile as hmmsearch reads it back from
    hmmbuild's file (`as_written`)."""
    if not rows:
        raise ValueError("template search: empty MSA")
    aligned, reference = stockholm_columns(rows)
    sequences = [easel.TextSequence(name=str(i).encode(), sequence=text) for i, text in enumerate(aligned)]
    msa = easel.TextMSA(name=b"query", sequences=sequences)
    msa.reference = reference
    digital = msa.digitize(PROTEIN_ALPHABET)
    builder = plan7.Builder(PROTEIN_ALPHABET, architecture="hand")
    with flushed_denormals():  # hmmbuild's arithmetic (calibration)
        hmm, _, _ = builder.build_msa(digital, plan7.Background(PROTEIN_ALPHABET))
    hmm = as_written(hmm)
    length = reference.count("x")
    if hmm.M != length:
        raise ValueError(f"template search: profile has {hmm.M} match states, query has {length} columns")
    return hmm


def search_hits(
    rows: list[Row],
    seqres: str | Path,
    settings: TemplateSettings = TemplateSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> list[TemplateHit]:
    """hmmsearch the MSA's profile against pdb_seqres; protein hits, best E-value first."""
    return search_hits_many([rows], seqres, settings, threads, block_residues)[0]


def search_hits_many(
    msas: list[list[Row]],
    seqres: str | Path,
    settings: TemplateSettings = TemplateSettings(),
    threads: int = 1,
    block_residues: int = DEFAULT_BLOCK_RESIDUES,
) -> list[list[TemplateHit]]:
    """`search_hits` of every MSA, reading pdb_seqres once for all of them."""
    hmms = build_profiles(build_profile, msas, threads)
    options = settings.pipeline_options(seqres)
    found = search_database_many(
        hmms, seqres, [options] * len(hmms), threads=threads, block_residues=block_residues
    )
    return [_template_hits(hits) for hits in found]


def _query_to_hit(columns: Iterable[str], query_start: int, hit_start: int) -> tuple[dict[int, int], int]:
    """Walk an alignment's columns ("match", "insert": a residue inserted in the hit, "gap": a query
    column with no hit residue) from 0-based starts; returns query index -> hit index and the query
    index after the last column."""
    mapping, q, h = {}, query_start, hit_start
    for column in columns:
        if column == "insert":
            h += 1
        elif column == "gap":
            q += 1
        else:
            mapping[q] = h
            q, h = q + 1, h + 1
    return mapping, q


def _template_hits(hits: plan7.TopHits) -> list[TemplateHit]:
    found = []
    for hit in hits.included:
        description = hit.description or ""
        name = _HIT_NAME.match(hit.name)
        if "mol:protein" not in description or name is None:
            continue
        length = _HIT_LENGTH.search(description)
        for domain in hit.domains.included:
            ali = domain.alignment
            columns = (
                "insert" if model_char == "." else "gap" if target_char == "-" else "match"
                for model_char, target_char in zip(ali.hmm_sequence, ali.target_sequence, strict=True)
            )
            mapping, _ = _query_to_hit(columns, ali.hmm_from - 1, ali.target_from - 1)
            matching = ali.target_sequence.replace("-", "").upper()
            found.append(
                TemplateHit(
                    pdb_id=name["pdb_id"].lower(),
                    chain=name["chain"],
                    evalue=domain.i_evalue,
                    full_length=int(length.group(1)) if length else -1,
                    query_to_hit=mapping,
                    matching_sequence=matching,
                )
            )
    found.sort(key=lambda t: t.evalue)
    return found


_A3M_HIT = re.compile(r"^(?P<name>\S+?)/(?P<start>\d+)-(?P<end>\d+)$")


def hits_from_a3m(rows: list[Row], query_length: int) -> list[TemplateHit]:
    """The template hits of a template search saved as a3m (hmmsearch against pdb_seqres, as AF3 and
    Protenix write it: rows named `{pdb_id}_{chain}/{start}-{end}` and described `mol:protein
    length:N`, aligned to the query's columns), in file order (the search's E-value order). Rows
    that name no pdb_seqres chain (a query row) are skipped. The E-values are not in the file (NaN)."""
    hits = []
    for i, (description, row) in enumerate(rows):
        words = description.split()
        found = _A3M_HIT.match(words[0]) if words else None
        name = _HIT_NAME.match(found["name"]) if found else None
        if name is None or "mol:protein" not in description:
            continue
        columns = ("insert" if char.islower() else "gap" if char == "-" else "match" for char in row)
        mapping, q = _query_to_hit(columns, 0, int(found["start"]) - 1)
        if q != query_length:
            raise ValueError(
                f"template hit {i} ({words[0]}) covers {q} query columns, the query has {query_length}"
            )
        length = _HIT_LENGTH.search(description)
        hits.append(
            TemplateHit(
                pdb_id=name["pdb_id"].lower(),
                chain=name["chain"],
                evalue=float("nan"),
                full_length=int(length.group(1)) if length else -1,
                query_to_hit=mapping,
                matching_sequence="".join(c for c in row if c != "-").upper(),
            )
        )
    return hits


def find_mmcif(mmcif_dir: str | Path, pdb_id: str) -> Path | None:
    """`{id}.cif[.gz]` flat or in the PDB mirror's `{id[1:3]}/` folders, any case; None if absent."""
    mmcif_dir = Path(mmcif_dir)
    for name in (pdb_id.lower(), pdb_id.upper()):
        for folder in (mmcif_dir, mmcif_dir / name[1:3]):
            for suffix in (".cif", ".cif.gz"):
                if (path := folder / f"{name}{suffix}").is_file():
                    return path
    return None


def release_date(block: gemmi.cif.Block) -> datetime.date | None:
    """First release: earliest `_pdbx_audit_revision_history.revision_date`, or for old-format files
    the earliest `_database_PDB_rev.date`."""
    for tag in ("_pdbx_audit_revision_history.revision_date", "_database_PDB_rev.date"):
        dates = [v for v in block.find_values(tag) if not gemmi.cif.is_null(v)]
        if dates:
            return min(datetime.date.fromisoformat(gemmi.cif.as_string(v)) for v in dates)
    return None


def read_template_chain(path: Path, auth_chain: str) -> TemplateChain:
    """Residues (entity_poly_seq order) and N/CA/C/CB coordinates of one author chain of a template
    hit's mmCIF, with its release date (the search filters by it)."""
    block = gemmi.cif.read(str(path)).sole_block()
    date = release_date(block)
    if date is None:
        raise ValueError(f"template {path.name}: no release date")
    return template_chain(block, auth_chain, path.name, date)


def template_chain(
    block: gemmi.cif.Block, auth_chain: str | None, name: str, date: datetime.date | None = None
) -> TemplateChain:
    """Residues and N/CA/C/CB coordinates of author chain `auth_chain` of an mmCIF block, or of its
    only polymer chain (None: an AF3 user template is a single-chain mmCIF). Residue k is entity_poly_seq
    position k+1, unresolved ones included, as AF3's `templateIndices` count them; a file without
    entity_poly_seq counts its chain's residues in file order."""
    structure = gemmi.make_structure_from_block(block)
    structure.setup_entities()
    structure.remove_alternative_conformations()
    model = structure[0]
    if auth_chain is None:
        polymers = sorted(
            {ch.name for ch in model for res in ch if res.entity_type == gemmi.EntityType.Polymer}
        )
        if len(polymers) != 1:
            raise ValueError(f"template {name}: expected one polymer chain, found {len(polymers)}")
        auth_chain = polymers[0]
    chain_residues = [res for ch in model if ch.name == auth_chain for res in ch]
    if not chain_residues:
        raise ValueError(f"template {name}: no chain {auth_chain}")
    polymer = next((r for r in chain_residues if r.entity_type == gemmi.EntityType.Polymer), None)
    if polymer is None:
        raise ValueError(f"template {name}: chain {auth_chain} has no polymer sequence")
    residues = [res for res in chain_residues if res.subchain == polymer.subchain]
    entity = structure.get_entity_of(model.get_subchain(polymer.subchain))
    if entity is not None and entity.full_sequence:
        res_names = [gemmi.Entity.first_mon(mon) for mon in entity.full_sequence]
        positions = [res.label_seq - 1 if res.label_seq is not None else -1 for res in residues]
    else:
        res_names = [res.name for res in residues]
        positions = list(range(len(residues)))
    coords = {atom: np.full((len(res_names), 3), np.nan, dtype=np.float32) for atom in ("N", "CA", "C", "CB")}
    for res, position in zip(residues, positions, strict=True):
        if not 0 <= position < len(res_names):
            continue
        for atom in coords:
            found = res.find_atom(atom, "*")
            if found is not None:
                coords[atom][position] = found.pos.tolist()
    return TemplateChain(date, res_names, coords)


def _restype(res_name: str) -> int:
    """restype of a template residue; modified amino acids count as their parent (MSE -> MET)."""
    if res_name in RESTYPE_INDEX and RESTYPE_INDEX[res_name] < UNKNOWN_PROTEIN:
        return RESTYPE_INDEX[res_name]
    info = gemmi.find_tabulated_residue(res_name)
    if info is not None and info.is_amino_acid():
        parent = ONE_TO_THREE_PROTEIN.get(info.one_letter_code.upper())
        if parent is not None:
            return RESTYPE_INDEX[parent]
    return UNKNOWN_PROTEIN


def template_features(
    query_length: int, query_to_hit: dict[int, int], chain: TemplateChain
) -> dict[str, np.ndarray]:
    """One template's arrays at the query's columns (template-group names, no K dimension): query
    column q takes template residue query_to_hit[q] (0-based), as AF3 maps a hit or a user template."""
    restype = np.full(query_length, GAP, dtype=np.int32)
    backbone = np.zeros((query_length, 3, 3), dtype=np.float32)
    backbone_mask = np.zeros(query_length, dtype=bool)
    pseudo_beta = np.zeros((query_length, 3), dtype=np.float32)
    pseudo_beta_mask = np.zeros(query_length, dtype=bool)
    for q, h in query_to_hit.items():
        name = chain.res_names[h]
        restype[q] = _restype(name)
        atoms = np.stack([chain.coords[a][h] for a in ("N", "CA", "C")])
        if np.isfinite(atoms).all():
            backbone[q], backbone_mask[q] = atoms, True
        beta = chain.coords["CA" if name == "GLY" else "CB"][h]
        if np.isfinite(beta).all():
            pseudo_beta[q], pseudo_beta_mask[q] = beta, True
    return {
        "template_restype": restype,
        "template_pseudo_beta": pseudo_beta,
        "template_pseudo_beta_mask": pseudo_beta_mask,
        "template_backbone": backbone,
        "template_backbone_mask": backbone_mask,
    }


def select_templates(
    query: str,
    hits: list[TemplateHit],
    mmcif_dir: str | Path,
    max_date: datetime.date,
    settings: TemplateSettings = TemplateSettings(),
    query_release_date: datetime.date | None = None,
) -> tuple[list[TemplateHit], list[dict[str, np.ndarray]]]:
    """AF3's template filters in E-value order; returns the kept hits and their features."""
    cutoff = max_date
    if query_release_date is not None:
        cutoff = min(cutoff, query_release_date - datetime.timedelta(days=DAYS_BEFORE_QUERY_DATE))
    kept, features, seen = [], [], set()
    cache: dict[tuple[str, str], TemplateChain | None] = {}
    for hit in hits:
        if len(kept) >= settings.max_templates:
            break
        if len(hit.query_to_hit) / len(query) <= settings.min_align_ratio:
            continue
        ratio = settings.max_subsequence_ratio
        if (
            ratio is not None
            and len(hit.matching_sequence) / len(query) > ratio
            and hit.matching_sequence in query
        ):
            continue
        if len(hit.matching_sequence) < settings.min_hit_length:
            continue
        key = (hit.pdb_id, hit.chain)
        if key not in cache:
            path = find_mmcif(mmcif_dir, hit.pdb_id)
            try:
                cache[key] = read_template_chain(path, hit.chain) if path is not None else None
            except (ValueError, RuntimeError) as err:
                log.warning("template %s skipped: %s", hit.name, err)
                cache[key] = None
        chain = cache[key]
        if chain is None or chain.release_date > cutoff:
            continue
        if hit.full_length != len(chain.res_names) or max(hit.query_to_hit.values()) >= len(chain.res_names):
            log.warning(
                "template %s skipped: seqres length %d, mmCIF sequence %d",
                hit.name,
                hit.full_length,
                len(chain.res_names),
            )
            continue
        feats = template_features(len(query), hit.query_to_hit, chain)
        if not (feats["template_backbone_mask"].any() or feats["template_pseudo_beta_mask"].any()):
            continue  # no resolved aligned residue
        signature = feats["template_restype"].tobytes()
        if settings.deduplicate and signature in seen:
            continue
        seen.add(signature)
        kept.append(hit)
        features.append(feats)
    return kept, features


def stack_templates(query_length: int, features: list[dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
    """[K, L, ...] arrays (K may be 0) in the template-group format of feature_spec.FEATURES."""
    out = {}
    for name, (group, dims, dtype) in FEATURES.items():
        if group == "template":
            empty = np.zeros((0, query_length, *dims[2:]), dtype=dtype)
            out[name] = np.stack([f[name] for f in features]).astype(dtype) if features else empty
    return out


def write_templates(path: str | Path, arrays: dict[str, np.ndarray], hits: list[TemplateHit]) -> None:
    """Save template arrays (+ hit names and E-values) as npz, atomically."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    buffer = io.BytesIO()
    np.savez(
        buffer,
        **arrays,
        template_names=np.array([h.name for h in hits], dtype=np.str_),
        template_evalues=np.array([h.evalue for h in hits], dtype=np.float64),
    )
    write_bytes_atomic(path, buffer.getvalue())


def search_templates(
    query: str,
    rows: list[Row],
    seqres: str | Path,
    mmcif_dir: str | Path,
    max_date: datetime.date,
    settings: TemplateSettings = TemplateSettings(),
    query_release_date: datetime.date | None = None,
    threads: int = 1,
) -> tuple[list[TemplateHit], dict[str, np.ndarray]]:
    """The whole template step for one protein chain: hits, filters, stacked features."""
    hits = search_hits(rows, seqres, settings, threads=threads)
    return _select(query, hits, mmcif_dir, max_date, settings, query_release_date)


def search_templates_many(
    queries: list[tuple[str, list[Row], datetime.date | None]],
    seqres: str | Path,
    mmcif_dir: str | Path,
    max_date: datetime.date,
    settings: TemplateSettings = TemplateSettings(),
    threads: int = 1,
) -> list[tuple[list[TemplateHit], dict[str, np.ndarray]]]:
    """`search_templates` of every (query, MSA rows, query release date or None), reading pdb_seqres
    once for all of them; each result equals that of the query alone."""
    found = search_hits_many([rows for _, rows, _ in queries], seqres, settings, threads=threads)
    return [
        _select(query, hits, mmcif_dir, max_date, settings, release)
        for (query, _, release), hits in zip(queries, found, strict=True)
    ]


def _select(
    query: str,
    hits: list[TemplateHit],
    mmcif_dir: str | Path,
    max_date: datetime.date,
    settings: TemplateSettings,
    query_release_date: datetime.date | None,
) -> tuple[list[TemplateHit], dict[str, np.ndarray]]:
    kept, features = select_templates(query, hits, mmcif_dir, max_date, settings, query_release_date)
    log.info("templates: %d hits, kept %s", len(hits), ", ".join(h.name for h in kept) or "none")
    return kept, stack_templates(len(query), features)
