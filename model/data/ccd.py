"""The Chemical Component Dictionary: one `Component` per CCD code.

Default source: the complete CCD shipped with `biotite` (`components.bcif`, ~49k components);
a user `components.cif` (text mmCIF, one data block per component) overrides and extends it.
The BinaryCIF file is read once (its raw msgpack, ~0.4 s) and each component is decoded only when
first asked for; parsed components are cached.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from model.fileio import sha256_file

# Bond orders of _chem_comp_bond.value_order; aromatic bonds carry their Kekulé order in the CCD.
_BOND_ORDERS = {"SING": 1, "DOUB": 2, "TRIP": 3, "QUAD": 4, "AROM": 1, "DELO": 1, "PI": 1, "POLY": 1}
_HYDROGENS = ("H", "D")

# Chemical classes of _chem_comp.type (upper-cased), AF3 §2.6 "standard polymer residue" check.
_PEPTIDE_MARK = "PEPTIDE"
_DNA_MARK = "DNA"
_RNA_MARK = "RNA"


@dataclass(frozen=True)
class Component:
    """One chemical component (CCD entry or a user/SMILES-defined ligand).

    Atom arrays have length N_atom (heavy atoms and hydrogens as in the CCD; callers drop
    hydrogens). `bonds` is [N_bond, 2] int atom indices with `bond_orders` [N_bond] (1, 2, 3;
    aromatic bonds carry their Kekulé order) and `bond_aromatic` [N_bond] bool.
    """

    code: str
    name: str
    type: str  # _chem_comp.type, e.g. "L-PEPTIDE LINKING", "NON-POLYMER", "RNA LINKING"
    atom_names: tuple[str, ...]
    elements: tuple[str, ...]  # upper-case element symbols, e.g. "C", "FE"
    charges: np.ndarray  # [N_atom] int
    leaving_atom: np.ndarray  # [N_atom] bool (_chem_comp_atom.pdbx_leaving_atom_flag)
    stereo: tuple[str, ...]  # [N_atom] "R" | "S" | "N" (_chem_comp_atom.pdbx_stereo_config)
    ideal_coords: np.ndarray  # [N_atom, 3] float32, NaN where missing
    model_coords: np.ndarray  # [N_atom, 3] float32, NaN where missing
    bonds: np.ndarray  # [N_bond, 2] int
    bond_orders: np.ndarray  # [N_bond] int
    bond_aromatic: np.ndarray  # [N_bond] bool
    smiles: str | None = None  # set for SMILES-defined ligands
    extra: dict = field(default_factory=dict, compare=False)

    @property
    def heavy_atom_mask(self) -> np.ndarray:
        """[N_atom] bool: True for every atom that is not hydrogen or deuterium."""
        return np.array([e not in _HYDROGENS for e in self.elements], dtype=bool)

    @property
    def num_heavy_atoms(self) -> int:
        return int(self.heavy_atom_mask.sum())

    @property
    def polymer_class(self) -> str | None:
        """ "protein", "dna" or "rna" when `type` is a polymer-linking type, else None."""
        return polymer_class(self.type)


def polymer_class(chem_comp_type: str) -> str | None:
    """Map a `_chem_comp.type` to "protein", "dna", "rna" or None (non-polymer, saccharide, ...)."""
    t = chem_comp_type.upper()
    if _PEPTIDE_MARK in t and "LIKE" not in t:
        return "protein"
    if _DNA_MARK in t:
        return "dna"
    if _RNA_MARK in t:
        return "rna"
    return None


class UnknownComponentError(KeyError):
    """A CCD code that neither the user's components.cif nor the full CCD defines."""

    def __init__(self, code: str, release: str) -> None:
        super().__init__(code)
        self.code = code
        self.message = f"unknown CCD code {code!r}: not in the chemical component dictionary ({release})"

    def __str__(self) -> str:
        return self.message


class Ccd:
    """Lookup of `Component`s by CCD code; user components shadow the built-in CCD.

    `release` names the sources, e.g. "biotite-1.6.0" or "biotite-1.6.0+user:<sha256 prefix>".
    """

    def __init__(self, sources: list[_BcifSource | _CifSource], release: str) -> None:
        self._sources = sources
        self.release = release
        self._cache: dict[str, Component] = {}

    def __getitem__(self, code: str) -> Component:
        comp = self._cache.get(code)
        if comp is not None:
            return comp
        for source in self._sources:
            comp = source.get(code)
            if comp is not None:
                self._cache[code] = comp
                return comp
        raise UnknownComponentError(code, self.release)

    def __contains__(self, code: object) -> bool:
        return isinstance(code, str) and (code in self._cache or any(code in s for s in self._sources))

    def get(self, code: str, default: Component | None = None) -> Component | None:
        try:
            return self[code]
        except UnknownComponentError:
            return default

    def codes(self) -> set[str]:
        """Every code any source defines."""
        out: set[str] = set()
        for source in self._sources:
            out.update(source.codes())
        return out

    def __repr__(self) -> str:
        return f"Ccd(release={self.release!r})"


def _biotite_ccd_path() -> Path:
    import biotite

    return Path(biotite.__file__).parent / "structure" / "info" / "components.bcif"


@functools.cache
def _builtin_source() -> _BcifSource:
    return _BcifSource(_biotite_ccd_path())


@functools.cache
def _load_ccd_cached(path: str | None, mtime: float | None) -> Ccd:
    import biotite

    builtin = _builtin_source()
    base_release = f"biotite-{biotite.__version__}"
    if path is None:
        return Ccd([builtin], base_release)
    user = _CifSource(Path(path))
    return Ccd([user, builtin], f"{base_release}+user:{sha256_file(path)[:16]}")


def load_ccd(path: str | Path | None = None) -> Ccd:
    """The CCD: biotite's complete dictionary, overridden by the user's `components.cif` at `path`.

    `path` None or "" gives the built-in CCD alone. Results are cached per path (and file mtime).
    """
    if path is None or str(path) == "":
        return _load_ccd_cached(None, None)
    p = Path(path).resolve()
    if not p.is_file():
        raise FileNotFoundError(f"CCD file {str(path)!r}: no such file")
    return _load_ccd_cached(str(p), p.stat().st_mtime)


# --- BinaryCIF (biotite's components.bcif) --------------------------------------------------------


class _BcifColumn:
    """One BinaryCIF column, decoded on first use.

    String columns keep only their index array and the concatenated unique strings, so that
    a component's rows are turned into Python strings without materialising all 2.3 M rows.
    """

    def __init__(self, raw: dict) -> None:
        self._raw = raw
        self._values: np.ndarray | None = None
        self._mask: np.ndarray | None = None
        self._offsets: np.ndarray | None = None
        self._string_data: str | None = None

    def _decode(self) -> None:
        from biotite.structure.io.pdbx.encoding import decode_stepwise, deserialize_encoding

        data = self._raw["data"]
        encodings = data["encoding"]
        if encodings[0]["kind"] == "StringArray":
            enc = encodings[0]
            self._values = decode_stepwise(
                data["data"], [deserialize_encoding(e) for e in enc["dataEncoding"]]
            )
            offsets = decode_stepwise(
                enc["offsets"], [deserialize_encoding(e) for e in enc["offsetEncoding"]]
            )
            self._offsets = offsets.tolist()  # Python ints: slicing with numpy scalars is slow
            self._string_data = enc["stringData"]
        else:
            self._values = decode_stepwise(data["data"], [deserialize_encoding(e) for e in encodings])
        mask = self._raw.get("mask")
        if mask is not None:
            self._mask = decode_stepwise(mask["data"], [deserialize_encoding(e) for e in mask["encoding"]])

    @property
    def values(self) -> np.ndarray:
        """Decoded numbers, or string indices (-1 = empty) for string columns."""
        if self._values is None:
            self._decode()
        return self._values

    def present(self, rows: slice) -> np.ndarray:
        """[rows] bool: value present (not '.' or '?')."""
        self.values  # noqa: B018 (decodes)
        n = len(range(*rows.indices(len(self._values))))
        return np.ones(n, dtype=bool) if self._mask is None else self._mask[rows] == 0

    def string(self, index: int) -> str:
        if index < 0:
            return ""
        return self._string_data[self._offsets[index] : self._offsets[index + 1]]

    def strings(self, rows: slice) -> list[str]:
        idx = self.values[rows]
        present = self.present(rows)
        return [self.string(int(i)) if ok else "" for i, ok in zip(idx, present, strict=True)]

    def floats(self, rows: slice) -> np.ndarray:
        out = self.values[rows].astype(np.float32)
        out[~self.present(rows)] = np.nan
        return out


class _BcifSource:
    """Lazy reader of a BinaryCIF CCD with categories chem_comp, chem_comp_atom, chem_comp_bond."""

    def __init__(self, path: Path) -> None:
        import msgpack

        with open(path, "rb") as fh:
            raw = msgpack.unpackb(fh.read(), use_list=True)
        block = raw["dataBlocks"][0]
        self._cols: dict[str, dict[str, _BcifColumn]] = {
            cat["name"].lstrip("_"): {c["name"]: _BcifColumn(c) for c in cat["columns"]}
            for cat in block["categories"]
        }
        self._comp_row = self._first_rows("chem_comp", "id")
        self._atom_rows = self._row_ranges("chem_comp_atom")
        self._bond_rows = self._row_ranges("chem_comp_bond")

    def _first_rows(self, category: str, column: str) -> dict[str, int]:
        col = self._cols[category][column]
        return {col.string(i): row for row, i in enumerate(col.values.tolist())}

    def _row_ranges(self, category: str) -> dict[str, tuple[int, int]]:
        # Rows of one component are contiguous; a change of the comp_id index starts the next one.
        col = self._cols[category]["comp_id"]
        idx = col.values
        starts = np.concatenate(([0], np.flatnonzero(idx[1:] != idx[:-1]) + 1, [len(idx)]))
        bounds = starts.tolist()
        codes = idx[starts[:-1]].tolist()
        return {col.string(c): (s, e) for c, s, e in zip(codes, bounds[:-1], bounds[1:], strict=True)}

    def __contains__(self, code: str) -> bool:
        return code in self._comp_row

    def codes(self) -> set[str]:
        return set(self._comp_row)

    def get(self, code: str) -> Component | None:
        row = self._comp_row.get(code)
        if row is None:
            return None
        cc = self._cols["chem_comp"]
        one = slice(row, row + 1)

        def text(col: str) -> str:
            return cc[col].strings(one)[0] if col in cc else ""

        atoms = slice(*self._atom_rows.get(code, (0, 0)))
        ac = self._cols["chem_comp_atom"]
        names = ac["atom_id"].strings(atoms)
        charges = ac["charge"].values[atoms].astype(np.int64)
        charges[~ac["charge"].present(atoms)] = 0

        def xyz(prefix: str, suffix: str) -> np.ndarray:
            return np.stack([ac[f"{prefix}{a}{suffix}"].floats(atoms) for a in "xyz"], axis=-1)

        bonds = slice(*self._bond_rows.get(code, (0, 0)))
        bc = self._cols["chem_comp_bond"]
        return _make_component(
            code=code,
            name=text("name"),
            comp_type=text("type"),
            atom_names=names,
            elements=ac["type_symbol"].strings(atoms),
            charges=charges,
            leaving=[v == "Y" for v in ac["pdbx_leaving_atom_flag"].strings(atoms)],
            stereo=ac["pdbx_stereo_config"].strings(atoms),
            ideal=xyz("pdbx_model_Cartn_", "_ideal"),
            model=xyz("model_Cartn_", ""),
            bond_atoms=(bc["atom_id_1"].strings(bonds), bc["atom_id_2"].strings(bonds)),
            bond_orders=bc["value_order"].strings(bonds),
            bond_aromatic=bc["pdbx_aromatic_flag"].strings(bonds),
            extra={k: text(k) for k in ("one_letter_code", "mon_nstd_parent_comp_id", "formula")},
        )


# --- text mmCIF (user components.cif) ---------------------------------------------------------------


class _CifSource:
    """A components.cif in text mmCIF, one data block per component, parsed per block on demand."""

    def __init__(self, path: Path) -> None:
        import gemmi

        try:
            doc = gemmi.cif.read(str(path))
        except (RuntimeError, ValueError) as exc:
            raise ValueError(f"CCD file {str(path)!r}: not readable as mmCIF: {exc}") from None
        self._path = path
        self._doc = doc  # blocks borrow from the document
        self._blocks = {}
        for block in doc:
            code = block.find_value("_chem_comp.id")
            code = gemmi.cif.as_string(code) if code is not None else block.name
            self._blocks[code] = block

    def __contains__(self, code: str) -> bool:
        return code in self._blocks

    def codes(self) -> set[str]:
        return set(self._blocks)

    def get(self, code: str) -> Component | None:
        import gemmi

        block = self._blocks.get(code)
        if block is None:
            return None

        def column(tag: str, n: int) -> list[str]:
            values = [gemmi.cif.as_string(v) for v in block.find_values(tag)]
            if not values:
                return ["?"] * n
            if len(values) != n:
                raise ValueError(
                    f"CCD file {str(self._path)!r}: component {code}: {tag} has {len(values)} rows, "
                    f"expected {n}"
                )
            return values

        def floats(tag: str, n: int) -> np.ndarray:
            return np.array([_cif_float(v) for v in column(tag, n)], dtype=np.float32)

        def text(tag: str) -> str:
            v = block.find_value(tag)
            return "" if v is None or v in ("?", ".") else gemmi.cif.as_string(v)

        names = [gemmi.cif.as_string(v) for v in block.find_values("_chem_comp_atom.atom_id")]
        n = len(names)
        xyz_ideal = np.stack([floats(f"_chem_comp_atom.pdbx_model_Cartn_{a}_ideal", n) for a in "xyz"], -1)
        xyz_model = np.stack([floats(f"_chem_comp_atom.model_Cartn_{a}", n) for a in "xyz"], -1)
        charges = np.array(
            [int(_cif_float(v, 0.0)) for v in column("_chem_comp_atom.charge", n)], dtype=np.int64
        )
        a1 = [gemmi.cif.as_string(v) for v in block.find_values("_chem_comp_bond.atom_id_1")]
        nb = len(a1)
        return _make_component(
            code=code,
            name=text("_chem_comp.name"),
            comp_type=text("_chem_comp.type"),
            atom_names=names,
            elements=column("_chem_comp_atom.type_symbol", n),
            charges=charges,
            leaving=[v == "Y" for v in column("_chem_comp_atom.pdbx_leaving_atom_flag", n)],
            stereo=column("_chem_comp_atom.pdbx_stereo_config", n),
            ideal=xyz_ideal,
            model=xyz_model,
            bond_atoms=(a1, column("_chem_comp_bond.atom_id_2", nb)),
            bond_orders=column("_chem_comp_bond.value_order", nb),
            bond_aromatic=column("_chem_comp_bond.pdbx_aromatic_flag", nb),
            extra={
                k: text(f"_chem_comp.{k}") for k in ("one_letter_code", "mon_nstd_parent_comp_id", "formula")
            },
        )


def _cif_float(value: str, missing: float = np.nan) -> float:
    return missing if value in ("", "?", ".") else float(value)


def _make_component(
    *,
    code: str,
    name: str,
    comp_type: str,
    atom_names: list[str],
    elements: list[str],
    charges: np.ndarray,
    leaving: list[bool],
    stereo: list[str],
    ideal: np.ndarray,
    model: np.ndarray,
    bond_atoms: tuple[list[str], list[str]],
    bond_orders: list[str],
    bond_aromatic: list[str],
    extra: dict,
) -> Component:
    index = {a: i for i, a in enumerate(atom_names)}
    pairs = []
    for a, b in zip(*bond_atoms, strict=True):
        if a not in index or b not in index:
            raise ValueError(f"CCD component {code}: bond {a}-{b} names an atom the component lacks")
        pairs.append((index[a], index[b]))
    return Component(
        code=code,
        name=name,
        type=comp_type.upper(),
        atom_names=tuple(atom_names),
        elements=tuple(e.upper() for e in elements),
        charges=charges,
        leaving_atom=np.array(leaving, dtype=bool),
        stereo=tuple(s if s in ("R", "S") else "N" for s in stereo),
        ideal_coords=ideal.astype(np.float32).reshape(-1, 3),
        model_coords=model.astype(np.float32).reshape(-1, 3),
        bonds=np.array(pairs, dtype=np.int64).reshape(-1, 2),
        bond_orders=np.array([_BOND_ORDERS.get(o.upper(), 1) for o in bond_orders], dtype=np.int64),
        bond_aromatic=np.array([v == "Y" for v in bond_aromatic], dtype=bool),
        extra=extra,
    )
