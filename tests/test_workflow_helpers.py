"""Helpers for the workflow tests: a scratch copy of the workflow, a `snakemake` runner, and the
workflow's scripts loaded as modules."""

from __future__ import annotations

import importlib.util
import os
import shutil
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
SNAKEMAKE = Path(sys.executable).parent / "snakemake"
# What a run needs; the library and the bundled databases are linked, not copied.
_COPIED = ("Snakefile", "workflow", "config", "scripts", "profiles", "envs")
_LINKED = ("model", "data")


def load_script(name: str):
    """scripts/{name}.py as a module, to call its `main(argv)` in-process (registered in sys.modules:
    its dataclasses look their module up there)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "scripts" / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module
    spec.loader.exec_module(module)
    return module


def make_workdir(dest: Path, config: dict | None = None) -> Path:
    """A copy of the workflow in `dest` (results go there), with `config` merged into config.yaml."""
    dest.mkdir(parents=True, exist_ok=True)
    for name in _COPIED:
        src = REPO / name
        if src.is_dir():
            shutil.copytree(src, dest / name, symlinks=True, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest / name)
    for name in _LINKED:
        (dest / name).symlink_to(REPO / name)
    (dest / "slurm").symlink_to("profiles/slurm")
    # Tests run the demo sizes (config/examples/demo.yaml over the real defaults), then their own.
    path = dest / "config" / "config.yaml"
    demo = yaml.safe_load((REPO / "config" / "examples" / "demo.yaml").read_text())
    merged = _merge(_merge(yaml.safe_load(path.read_text()), demo), config or {})
    path.write_text(yaml.safe_dump(merged, sort_keys=False))
    return dest


def _merge(base: dict, extra: dict) -> dict:
    out = dict(base)
    for key, value in extra.items():
        out[key] = (
            _merge(out[key], value) if isinstance(value, dict) and isinstance(out.get(key), dict) else value
        )
    return out


def snakemake(
    workdir: Path, *args: str, timeout: float = 300, check: bool = True
) -> subprocess.CompletedProcess:
    """Run snakemake in `workdir`; on failure (when `check`) raise with its output."""
    env = dict(os.environ, PATH=f"{SNAKEMAKE.parent}{os.pathsep}{os.environ['PATH']}")
    proc = subprocess.run(
        [str(SNAKEMAKE), *args], cwd=workdir, env=env, capture_output=True, text=True, timeout=timeout
    )
    if check and proc.returncode != 0:
        raise AssertionError(
            f"snakemake {' '.join(args)} failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}"
        )
    return proc


def planned_jobs(workdir: Path, *args: str) -> list[tuple[str, str]]:
    """(rule, wildcards) of every job a dry run of `args` would run (group members included)."""
    proc = snakemake(workdir, "--dry-run", *args)
    jobs, rule = [], None
    for line in (proc.stdout + proc.stderr).splitlines():
        stripped = line.strip()
        if stripped.startswith(("rule ", "localrule ")) and stripped.endswith(":"):
            rule = stripped.split()[1].rstrip(":")
            jobs.append((rule, ""))
        elif rule and stripped.startswith("wildcards:"):
            jobs[-1] = (rule, stripped.removeprefix("wildcards:").strip())
        elif not stripped:
            rule = None
    return jobs
