"""Typed network configuration, loaded from the YAML presets in config/presets/ (data, not code).

`load_preset("base")` gives the released Protenix base v1.0.0 sizes (368.48 M parameters);
`load_preset("tiny")` the same architecture at CPU-test sizes; `load_preset("protenix_mini_default_v0.5.0")`
and the other `protenix_*` presets the sizes of Protenix's released checkpoints of that name. A path to
any YAML file of the same shape works too. Unknown keys are an error so a typo never silently falls back
to a default. Each preset also carries the inference settings its weights were released with
(`InferenceConfig`); `config_from_dict` rebuilds a config stored in a checkpoint.
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
    # sdpa: scaled_dot_product_attention (the default until FlexAttention is measured on a GPU);
    # auto: FlexAttention compiled per size bucket on CUDA, SDPA elsewhere; flex: FlexAttention on any
    # device (eager off CUDA).
    attention_kernel: str = "sdpa"


@dataclass
class MsaConfig:
    c_m: int = 64
    n_blocks: int = 4
    pwa_heads: int = 8  # AF3 Alg 10 N_head
    pwa_hidden: int = 8
    opm_hidden: int = 32  # AF3 Alg 9 c
    msa_dropout: float = 0.15
    pair_dropout: float = 0.25
    # Per-cycle random row subsample (AF3 §3.3: every recycle, at inference too, as Protenix does): a
    # uniform number of rows in [sample_min_rows, N_msa], capped at sample_max_rows, in random order.
    sample_min_rows: int = 1
    sample_max_rows: int = 16384
    # False: inference takes the first sample_max_rows rows every recycle (parity tests); training
    # always samples.
    sample_at_inference: bool = True


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
    # Replay each denoiser step as a CUDA graph captured once per target (inference on CUDA only).
    cuda_graph: bool = False
    # FP32 denoiser matmuls on TF32 tensor cores (CUDA; 10-bit mantissa inputs, FP32 accumulation).
    tf32: bool = False


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
class InferenceConfig:
    """Sampler and ranking settings that belong with a set of weights (AF3 Alg 18, §3.7.1, §5.9.3).

    `schedule_ends_at_zero`: the last noise level is 0 instead of sigma_data * s_min (Protenix's
    schedule). `ranking`: "af3" = 0.8 ipTM + 0.2 pTM + 0.5 disorder - 100 clash, pTM standing in for
    the ipTM of a single chain; "protenix" = the same without the disorder term and with ipTM 0 for a
    single chain (Protenix's ranking_score).
    """

    n_step: int = 200
    gamma0: float = 0.8
    gamma_min: float = 1.0
    noise_scale_lambda: float = 1.003
    step_scale_eta: float = 1.5
    s_max: float = 160.0
    s_min: float = 4e-4
    rho: float = 7.0
    schedule_ends_at_zero: bool = False
    ranking: str = "af3"


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
    # The input embedder's atom encoder (AF3 Alg 2/5): 3 blocks in every released Protenix size, also
    # where the diffusion module's own atom encoder has 1.
    input_atom_encoder: TransformerConfig = field(default_factory=lambda: TransformerConfig(3, 4))
    checkpoint_blocks: bool = False  # activation checkpointing per block while gradients are on
    pairformer: PairformerConfig = field(default_factory=PairformerConfig)
    triangle: TriangleConfig = field(default_factory=TriangleConfig)
    msa: MsaConfig = field(default_factory=MsaConfig)
    template: TemplateConfig = field(default_factory=TemplateConfig)
    diffusion: DiffusionConfig = field(default_factory=DiffusionConfig)
    confidence: ConfidenceConfig = field(default_factory=ConfidenceConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)

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
            "InferenceConfig": InferenceConfig,
        }.get(ftype if isinstance(ftype, str) else ftype.__name__)
        kwargs[key] = _build(sub, value, f"{where}.{key}") if sub else value
    return cls(**kwargs)


def config_from_dict(data: dict[str, Any], where: str) -> ModelConfig:
    """A ModelConfig from a nested mapping (a preset file's content or `dataclasses.asdict` of a
    config, as checkpoints store it); `where` names the source in errors."""
    cfg = _build(ModelConfig, data, where)
    if cfg.c_token_input <= 0:
        raise ValueError(f"preset {where}.c_s_inputs: must exceed 65, got {cfg.c_s_inputs}")
    if cfg.inference.ranking not in ("af3", "protenix"):
        raise ValueError(f"preset {where}.inference.ranking: expected af3 or protenix")
    return cfg


def preset_names() -> list[str]:
    """The names of the presets in config/presets/, sorted."""
    return sorted(p.stem for p in PRESET_DIR.glob("*.yaml"))


def load_preset(name_or_path: str | Path) -> ModelConfig:
    """A ModelConfig from `config/presets/{name}.yaml` or from a YAML file path."""
    path = Path(name_or_path)
    if path.suffix not in (".yaml", ".yml"):
        path = PRESET_DIR / f"{name_or_path}.yaml"
    if not path.is_file():
        raise FileNotFoundError(f"preset {name_or_path}: no file {path}")
    return config_from_dict(yaml.safe_load(path.read_text()) or {}, path.stem)
