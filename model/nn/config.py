"""Typed network configuration, loaded from the YAML presets in config/presets/ (data, not code).

`load_preset("base")` gives the released Protenix base v1.0.0 sizes (368.48 M parameters);
`load_preset("tiny")` the same architecture at CPU-test sizes. A path to any YAML file of the same
shape works too. Unknown keys are an error so a typo never silently falls back to a default.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

PRESET_DIR = Path(__file__).resolve().parents[2] / "config" / "presets"


@dataclass
class PairformerConfig:
    n_blocks: int = 48
    n_heads: int = 16  # single attention with pair bias (AF3 Alg 24)
    dropout: float = 0.25


@dataclass
class TriangleConfig:
    """Sizes shared by every pair stack (pairformer, MSA module, template embedder, confidence head)."""

    mul_hidden: int = 128  # AF3 Alg 12/13 c
    att_heads: int = 4  # AF3 Alg 14/15 N_head
    att_hidden: int = 32  # AF3 Alg 14/15 c per head


@dataclass
class MsaConfig:
    c_m: int = 64
    n_blocks: int = 4
    pwa_heads: int = 8  # AF3 Alg 10 N_head
    pwa_hidden: int = 8
    opm_hidden: int = 32  # AF3 Alg 9 c
    msa_dropout: float = 0.15
    pair_dropout: float = 0.25
    # Per-cycle random row subsample (training, or whenever a generator is given): a uniform number
    # of rows in [sample_min_rows, N_msa], capped at sample_max_rows, in random order.
    sample_min_rows: int = 1
    sample_max_rows: int = 16384


@dataclass
class TemplateConfig:
    c: int = 64
    n_blocks: int = 2
    dropout: float = 0.25
    transition_n: int = 2


@dataclass
class TransformerConfig:
    n_blocks: int
    n_heads: int


@dataclass
class DiffusionConfig:
    c_token: int = 768
    atom_encoder: TransformerConfig = field(default_factory=lambda: TransformerConfig(3, 4))
    transformer: TransformerConfig = field(default_factory=lambda: TransformerConfig(24, 16))
    atom_decoder: TransformerConfig = field(default_factory=lambda: TransformerConfig(3, 4))
    c_fourier: int = 256
    # `prepare` caches the 24 per-block token attention biases ([H, T, T] each) up to this many
    # tokens; above it they are recomputed every step (the cache would take 24·16·T² floats).
    bias_cache_max_tokens: int = 2048


@dataclass
class ConfidenceConfig:
    n_blocks: int = 4
    max_atoms_per_token: int = 24
    distance_bin_start: float = 3.25
    distance_bin_end: float = 52.0
    distance_bin_step: float = 1.25
    plddt_bins: int = 50
    pae_bins: int = 64
    pde_bins: int = 64
    stop_gradient: bool = True


@dataclass
class ModelConfig:
    c_s: int = 384
    c_z: int = 128
    c_s_inputs: int = 449  # c_token of the input embedder + 32 restype + 32 profile + deletion_mean
    c_atom: int = 128
    c_atompair: int = 16
    sigma_data: float = 16.0
    n_cycle: int = 10
    r_max: int = 32
    s_max: int = 2
    n_queries: int = 32  # sequence-local atom attention (AF3 Alg 7)
    n_keys: int = 128
    distogram_bins: int = 64
    checkpoint_blocks: bool = False  # activation checkpointing per block while gradients are on
    pairformer: PairformerConfig = field(default_factory=PairformerConfig)
    triangle: TriangleConfig = field(default_factory=TriangleConfig)
    msa: MsaConfig = field(default_factory=MsaConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)

    @property
    def c_token_input(self) -> int:
        """Width of the input embedder's atom-to-token output (c_s_inputs minus the 65 token features)."""
        return self.c_s_inputs - 65


def _build(cls: type, data: dict[str, Any], where: str) -> Any:
    if not isinstance(data, dict):
        raise ValueError(f"preset {where}: expected a mapping, got {type(data).__name__}")
    fields = {f.name: f for f in dataclasses.fields(cls)}
    kwargs = {}
    for key, value in data.items():
        if key not in fields:
            raise ValueError(f"preset {where}.{key}: unknown key (expected one of {sorted(fields)})")
        ftype = fields[key].type
        sub = {
            "PairformerConfig": PairformerConfig,
            "TriangleConfig": TriangleConfig,
            "MsaConfig": MsaConfig,
            "TemplateConfig": TemplateConfig,
            "TransformerConfig": TransformerConfig,
            "DiffusionConfig": DiffusionConfig,
            "ConfidenceConfig": ConfidenceConfig,
        }.get(ftype if isinstance(ftype, str) else ftype.__name__)
        kwargs[key] = _build(sub, value, f"{where}.{key}") if sub else value
    return cls(**kwargs)


def load_preset(name_or_path: str | Path) -> ModelConfig:
    """A ModelConfig from `config/presets/{name}.yaml` or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"preset {name_or_path}: no file {path}")
    data = yaml.safe_load(path.read_text()) or {}
    cfg = _build(ModelConfig, data, path.stem)
    if cfg.c_token_input <= 0:
        raise ValueError(f"preset {path.stem}.c_s_inputs: must exceed 65, got {cfg.c_s_inputs}")
    return cfg
