"""The four training stages of config/stages.yaml (the seed table) resolved into one flat config.

`resolve_stage(path, "stage0", overrides)` merges `defaults` with the stage's block and the
command-line `key=value` overrides (dotted keys, YAML-typed values) and returns a nested dict.
"""

from __future__ import annotations

import copy
from pathlib import Path

import yaml

STAGE_NAMES = ("stage0", "stage1", "stage2", "stage3")


class StageConfigError(ValueError):
    """A stages.yaml or an override that cannot be resolved."""


def _merge(base: dict, extra: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def get_dotted(cfg: dict, key: str):
    """`cfg["loss"]["weight"]["alpha_pae"]` for key "loss.weight.alpha_pae"; KeyError if absent."""
    node = cfg
    for part in key.split("."):
        node = node[part]
    return node


def apply_override(cfg: dict, item: str) -> None:
    """Set one `dotted.key=value` in place; the key must exist (typos fail loudly)."""
    if "=" not in item:
        raise StageConfigError(f"override {item!r}: expected key=value")
    key, raw = item.split("=", 1)
    parts = key.strip().split(".")
    node = cfg
    for part in parts[:-1]:
        if not isinstance(node.get(part), dict):
            raise StageConfigError(f"override {item!r}: unknown key {key!r}")
        node = node[part]
    if parts[-1] not in node:
        raise StageConfigError(f"override {item!r}: unknown key {key!r}")
    node[parts[-1]] = yaml.safe_load(raw)


def resolve_stage(path: str | Path, stage: str | int, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The resolved config of one stage: defaults <- stage block <- overrides.

    `stage` is "stage2" or 2. The result carries `stage` (the name) and `stage_index`.
    """
    name = f"stage{stage}" if isinstance(stage, int) or str(stage).isdigit() else str(stage)
    with open(path) as f:
        doc = yaml.safe_load(f)
    if not isinstance(doc, dict) or "stages" not in doc:
        raise StageConfigError(f"{path}: no 'stages' mapping")
    if name not in doc["stages"]:
        raise StageConfigError(f"{path}: stage {name!r} not found (have {sorted(doc['stages'])})")
    cfg = _merge(doc.get("defaults") or {}, doc["stages"][name])
    for item in overrides:
        apply_override(cfg, item)
    cfg["stage"] = name
    cfg["stage_index"] = int(name.removeprefix("stage"))
    for key in ("train_crop_size", "diffusion_batch_size", "steps", "lr"):
        if key not in cfg:
            raise StageConfigError(f"{path}: stage {name!r}: missing {key!r}")
    return cfg
