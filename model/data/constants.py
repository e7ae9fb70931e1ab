"""Vocabularies shared by the featurizer, the network and the writers (AF3 supplement §2.8, Table 5)."""

from __future__ import annotations

# restype: 32 classes = 20 amino acids + unknown, 4 RNA + unknown, 4 DNA + unknown, gap.
# Ligands, ions and atomised modified residues use the unknown amino acid (AF3 §2.8).
PROTEIN_RESIDUES = (
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "ILE",
    "LEU", "LYS", "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL",
)  # fmt: skip
PROTEIN_ONE_LETTER = "ARNDCQEGHILKMFPSTWYV"
RNA_RESIDUES = ("A", "G", "C", "U")
DNA_RESIDUES = ("DA", "DG", "DC", "DT")

RESTYPES: tuple[str, ...] = (
    *PROTEIN_RESIDUES, "UNK",
    *RNA_RESIDUES, "N",
    *DNA_RESIDUES, "DN",
    "-",
)  # fmt: skip
NUM_RESTYPES = len(RESTYPES)  # 32
RESTYPE_INDEX: dict[str, int] = {name: i for i, name in enumerate(RESTYPES)}
UNKNOWN_PROTEIN = RESTYPE_INDEX["UNK"]
UNKNOWN_RNA = RESTYPE_INDEX["N"]
UNKNOWN_DNA = RESTYPE_INDEX["DN"]
GAP = RESTYPE_INDEX["-"]

ONE_TO_THREE_PROTEIN = dict(zip(PROTEIN_ONE_LETTER, PROTEIN_RESIDUES, strict=True))
THREE_TO_ONE_PROTEIN = {v: k for k, v in ONE_TO_THREE_PROTEIN.items()}
ONE_TO_CCD_RNA = {"A": "A", "G": "G", "C": "C", "U": "U"}
ONE_TO_CCD_DNA = {"A": "DA", "G": "DG", "C": "DC", "T": "DT"}

# Molecule types, per token (`mol_type` feature) and per chain.
MOL_PROTEIN, MOL_RNA, MOL_DNA, MOL_LIGAND = 0, 1, 2, 3
MOL_TYPE_NAMES = ("protein", "rna", "dna", "ligand")
CHAIN_TYPES = ("protein", "rna", "dna", "ligand", "ion", "branched")
# The three atoms of a polymer token's frame (AF3 §4.3.2): backbone N, CA, C; sugar C1', C3', C4'.
FRAME_ATOMS = {MOL_PROTEIN: ("N", "CA", "C"), MOL_RNA: ("C1'", "C3'", "C4'"), MOL_DNA: ("C1'", "C3'", "C4'")}

# Reference-conformer encodings (AF3 Table 5).
NUM_ELEMENTS = 128  # ref_element: atomic number, one-hot over 128
ATOM_NAME_CHARS = 4  # ref_atom_name_chars: 4 characters, each ord(c) - 32 in [0, 64)
ATOM_NAME_VOCAB = 64

# Token geometry (AF3 §2.6): centre atom and representative atom per polymer residue.
CENTER_ATOM = {"protein": "CA", "rna": "C1'", "dna": "C1'"}
# Distogram/representative atom: CB (CA for glycine), C4 for purines, C2 for pyrimidines.
PURINES = {"A", "G", "DA", "DG"}

# MSA (AF3 §2.3): caps on rows used by the featurizer.
MAX_MSA_ROWS = 16384
MAX_PAIRED_ROWS = 8191
MAX_TEMPLATES = 4

# Distogram binning (AF3 §4.4): 64 bins from 2 to 22 Å.
DISTOGRAM_BINS = 64
DISTOGRAM_MIN, DISTOGRAM_MAX = 2.0, 22.0
