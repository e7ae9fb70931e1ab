"""The pages of `snakemake predict --report report.html`: one self-contained HTML page per target
and one figure of training curves per stage (matplotlib; no network access, no CDN).

A target's page holds the PAE heat map of the top-ranked sample (chain boundaries as lines), its
pLDDT per residue coloured by AF3's bands, the ranking table of every seed and sample, an
interactive 3-D view of the top-ranked model (3Dmol.js, BSD-3-Clause, bundled in
workflow/report/3Dmol-min.js and inlined) and, once `snakemake evaluate` has run, the metrics
against the reference. Images are inlined as data URIs, so the page is one file. When the page has
laid out the viewer it sets `data-viewer` on <body> ("ready", "failed: ..." or "none" on the
page of a failed prediction) and posts
{"foldline_report": {viewer, images, broken, external}} to its parent window (the Snakemake
report's frame), which the report test (tests/test_report.py) reads.
"""

from __future__ import annotations

import base64
import csv
import html
import io
import json
from pathlib import Path

import gemmi
import numpy as np

from model.fileio import write_bytes_atomic, write_text_atomic
from model.infer.writer import pae_png

# AF3's pLDDT bands (as drawn by the AlphaFold Protein Structure Database): lower bound, colour, label.
PLDDT_BANDS = (
    (90.0, "#0053D6", "very high (> 90)"),
    (70.0, "#65CBF3", "confident (70-90)"),
    (50.0, "#FFDB13", "low (50-70)"),
    (0.0, "#FF7D45", "very low (< 50)"),
)
LOSS_COLUMNS = (
    "loss", "diffusion", "mse", "bond", "smooth_lddt", "distogram", "confidence", "plddt", "pae", "pde",
    "resolved",
)  # fmt: skip
VALIDATION_COLUMNS = ("val_lddt", "val_dockq")


def band_colour(plddt: float) -> str:
    return next(colour for lower, colour, _ in PLDDT_BANDS if plddt >= lower)


def _figure_png(fig) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    plt.close(fig)
    return buf.getvalue()


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def residue_plddt(model_cif: Path) -> tuple[list[str], list[int], np.ndarray]:
    """(chain, residue number, mean pLDDT) per residue of a written model (pLDDT in the B-factors)."""
    st = gemmi.read_structure(str(model_cif))
    chains, numbers, values = [], [], []
    for chain in st[0]:
        for res in chain:
            chains.append(chain.name)
            numbers.append(res.seqid.num)
            values.append(float(np.mean([a.b_iso for a in res])))
    return chains, numbers, np.asarray(values)


def plddt_png(chains: list[str], values: np.ndarray, title: str) -> bytes:
    """Bar per residue coloured by AF3's pLDDT bands, chain boundaries as vertical lines."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(8, 2.8), dpi=100)
    x = np.arange(len(values))
    ax.bar(x, values, width=1.0, color=[band_colour(v) for v in values], linewidth=0)
    for i in range(1, len(chains)):
        if chains[i] != chains[i - 1]:
            ax.axvline(i - 0.5, color="k", lw=0.6)
    from matplotlib.patches import Patch

    for lower, _, _ in PLDDT_BANDS[:-1]:
        ax.axhline(lower, color="0.6", lw=0.5, ls=":")
    handles = [Patch(color=colour, label=label) for _, colour, label in PLDDT_BANDS]
    ax.set_xlim(-0.5, len(values) - 0.5)
    ax.set_ylim(0, 100)
    ax.set_xlabel("residue (chains in order " + ", ".join(dict.fromkeys(chains)) + ")")
    ax.set_ylabel("pLDDT")
    ax.set_title(title)
    ax.legend(
        handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.3), ncol=4, fontsize=8, frameon=False
    )
    return _figure_png(fig)


def training_png(metrics_csv: Path, stage: int) -> bytes:
    """Three panels of one training stage against the step: loss terms (log scale), learning rate,
    validation lDDT (and DockQ where complexes were validated)."""
    with Path(metrics_csv).open() as fh:
        rows = list(csv.DictReader(fh))
    plt = _pyplot()
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.5), dpi=100)

    def series(column: str) -> tuple[list[float], list[float]]:
        pts = [(float(r["step"]), float(r[column])) for r in rows if r.get(column) not in (None, "", "nan")]
        return [p[0] for p in pts], [p[1] for p in pts]

    for column in LOSS_COLUMNS:
        steps, values = series(column)
        if steps and any(v > 0 for v in values):
            axes[0].plot(steps, values, label=column, lw=1.2 if column == "loss" else 0.8)
    axes[0].set_yscale("log")
    axes[0].set_title(f"stage {stage}: loss terms")
    axes[0].legend(fontsize=7, ncol=2, loc="best")
    steps, values = series("lr")
    axes[1].plot(steps, values, color="k")
    axes[1].set_title("learning rate")
    validated = False
    for column in VALIDATION_COLUMNS:
        steps, values = series(column)
        if steps:
            axes[2].plot(steps, values, marker="o", label=column.removeprefix("val_"))
            validated = True
    axes[2].set_ylim(0, 1)
    axes[2].set_title("validation (held-out entries)")
    if validated:
        axes[2].legend(fontsize=8)
    else:
        axes[2].text(0.5, 0.5, "no validation step in this stage\n(val_every, val_entries)", ha="center",
                     va="center", transform=axes[2].transAxes, color="0.4")  # fmt: skip
    for ax in axes:
        ax.set_xlabel("step")
    return _figure_png(fig)


def _data_uri(png: bytes) -> str:
    return "data:image/png;base64," + base64.b64encode(png).decode()


def _fmt(value, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return html.escape(str(value))


def _table(header: list[str], rows: list[list], marked: set[int] | None = None) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = ""
    for n, row in enumerate(rows):
        cells = "".join(f"<td>{_fmt(v)}</td>" for v in row)
        body += f'<tr class="top">{cells}</tr>' if n in (marked or set()) else f"<tr>{cells}</tr>"
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _max_offdiagonal(matrix) -> float | None:
    if matrix is None:
        return None
    m = np.array(matrix, dtype=float)
    if m.size == 0:
        return None
    np.fill_diagonal(m, np.nan)
    return None if np.isnan(m).all() else float(np.nanmax(m))


def ranking_rows(pred_dir: Path) -> tuple[list[list], int | None]:
    """Rows (seed, sample, ranking score, pTM, ipTM, max ipSAE, disorder, clash) of every sample,
    in the order of ranking_scores.csv, and the index of the top-ranked one."""
    with (pred_dir / "ranking_scores.csv").open() as fh:
        entries = list(csv.DictReader(fh))
    rows, top, best = [], None, None
    for n, entry in enumerate(entries):
        summary_path = (
            pred_dir / f"seed-{entry['seed']}_sample-{entry['sample']}" / "summary_confidences.json"
        )
        summary = json.loads(summary_path.read_text()) if summary_path.is_file() else {}
        score = float(entry["ranking_score"])
        if best is None or score > best:
            best, top = score, n
        rows.append([
            int(entry["seed"]), int(entry["sample"]), score, summary.get("ptm"), summary.get("iptm"),
            _max_offdiagonal(summary.get("chain_pair_ipsae")), summary.get("fraction_disordered"),
            bool(summary.get("has_clash")) if "has_clash" in summary else None,
        ])  # fmt: skip
    return rows, top


def evaluation_html(result: dict) -> str:
    """Tables of the evaluation JSON of one target (model.eval.evaluate)."""
    if "error" in result:
        return f'<p class="error">Not evaluated: {html.escape(result["error"])}</p>'
    rows, marked = [], set()
    for n, s in enumerate(result["samples"]):
        dockqs = [v["dockq"] for v in s["dockq"].values()]
        ligands = [v["rmsd"] for v in s["ligands"].values() if v["rmsd"] is not None]
        rows.append([
            s["seed"], s["sample"], s["ranking_score"], s["lddt"]["global"], s["ca_rmsd"], s["backbone_rmsd"],
            s["tm_score"]["complex"], float(np.mean(dockqs)) if dockqs else None,
            float(np.mean(ligands)) if ligands else None,
        ])  # fmt: skip
        if s["top_ranked"]:
            marked.add(n)
    ranking = result["ranking"]
    verdict = "chose the best sample" if ranking["top_is_best"] else "missed the best sample"
    parts = [
        f"<p>Reference: <code>{html.escape(str(result['reference']))}</code>. Top-ranked sample "
        f"{html.escape(ranking['top_ranked'])}, best by {html.escape(ranking['criterion'])} "
        f"{html.escape(ranking['best'])}: the ranking {verdict}"
        f" ({_fmt(ranking['top_value'])} vs {_fmt(ranking['best_value'])}).</p>",
        _table(
            [
                "seed",
                "sample",
                "ranking score",
                "lDDT",
                "Cα RMSD (Å)",
                "backbone RMSD (Å)",
                "TM-score",
                "mean DockQ",
                "mean ligand RMSD (Å)",
            ],
            rows,
            marked,
        ),  # fmt: skip
    ]
    top = next(s for s in result["samples"] if s["top_ranked"])
    detail = [["lDDT", "chain", k, v] for k, v in top["lddt"]["chains"].items()]
    detail += [["lDDT", "interface", k, v] for k, v in top["lddt"]["interfaces"].items()]
    detail += [["TM-score", "chain", k, v] for k, v in top["tm_score"]["chains"].items()]
    detail += [["DockQ", "interface", k, v["dockq"]] for k, v in top["dockq"].items()]
    for name, lig in top["ligands"].items():
        detail.append(["pocket-aligned RMSD (Å)", "ligand", name, lig["rmsd"]])
        detail.append(["ligand lDDT", "ligand", name, lig["lddt"]])
        if "posebusters" in lig:
            checks = lig["posebusters"]
            passed = checks.get("all", checks.get("error"))
            detail.append(["PoseBusters: all checks pass", "ligand", name, passed])
    if detail:
        parts.append("<h3>Top-ranked sample, per chain, interface and ligand</h3>")
        parts.append(_table(["metric", "of", "name", "value"], detail))
    return "\n".join(parts)


PAGE_STYLE = """
body { font-family: sans-serif; margin: 1.5em; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 0.2em 0.6em; text-align: right; }
tr.top { background: #e8f0ff; font-weight: bold; }
.caption { color: #555; font-size: 0.9em; max-width: 60em; }
.error { color: #a00; }
#viewer { width: 640px; height: 480px; position: relative; border: 1px solid #ccc; }
"""

VIEWER_SCRIPT = """
(function () {
  var status = "ready";
  var source = document.getElementById("model-cif");
  if (!source) { status = "none"; } else try {
    var text = source.textContent;
    var viewer = $3Dmol.createViewer(document.getElementById("viewer"), {backgroundColor: "white"});
    if (!viewer) { throw new Error("no WebGL context"); }
    viewer.addModel(text, "cif");
    var colour = function (atom) { return BAND_COLOUR(atom.b); };
    viewer.setStyle({}, {cartoon: {colorfunc: colour}, line: {colorfunc: colour}});
    viewer.setStyle({hetflag: true}, {stick: {colorfunc: colour}});
    var atoms = viewer.getModel().selectedAtoms({});
    var bonded = atoms.filter(function (a) { return a.bonds.length > 0; }).length;
    if (bonded < atoms.length / 2) {  // no sensible chemistry (e.g. untrained weights): show the atoms
      viewer.setStyle({}, {sphere: {radius: 0.6, colorfunc: colour}});
    }
    viewer.zoomTo();
    viewer.render();
  } catch (err) {
    status = "failed: " + err.message;
  }
  var images = Array.prototype.slice.call(document.images);
  var broken = images.filter(function (img) { return !(img.complete && img.naturalWidth > 0); }).length;
  var links = Array.prototype.slice.call(document.querySelectorAll("[src], [href]"));
  var external = links.map(function (el) { return el.getAttribute("src") || el.getAttribute("href"); })
                      .filter(function (url) { return !/^(data:|#)/.test(url); });
  document.body.dataset.viewer = status;
  document.body.dataset.images = images.length + " " + broken;
  document.body.dataset.external = external.length;
  if (window.parent !== window) {
    window.parent.postMessage({foldline_report: {page: document.title, viewer: status, images: images.length,
                                                 broken: broken, external: external}}, "*");
  }
})();
"""


def _band_colour_js() -> str:
    tests = " ".join(f'if (b >= {lower}) return "{colour}";' for lower, colour, _ in PLDDT_BANDS)
    return f'function BAND_COLOUR(b) {{ {tests} return "{PLDDT_BANDS[-1][1]}"; }}'


def target_page(
    target: str, pred_dir: Path, viewer_js: str, evaluation: dict | None, failure: str | None
) -> str:
    """The HTML page of one target (see module docstring)."""
    title = f"Foldline: {target}"
    parts = [f"<h1>{html.escape(target)}</h1>"]
    model_cif = pred_dir / f"{target}_model.cif"
    if failure or not model_cif.is_file():
        reason = failure or f"no model was written under {pred_dir}"
        parts.append(f'<p class="error">Prediction failed: {html.escape(reason)}</p>')
        return _page(title, "\n".join(parts), f"<script>{VIEWER_SCRIPT}</script>")
    provenance = json.loads((pred_dir / "provenance.json").read_text())
    best = provenance.get("best", {})
    conf = json.loads((pred_dir / f"{target}_confidences.json").read_text())
    pae = np.asarray(conf["pae"], dtype=np.float32)
    chains, _, plddt = residue_plddt(model_cif)
    label = f"seed {best.get('seed')} sample {best.get('sample')}"
    pae_figure = pae_png(pae, conf["token_chain_ids"], label)
    rows, top = ranking_rows(pred_dir)
    parts += [
        f"<p>Top-ranked model: {html.escape(label)} (<code>{html.escape(model_cif.name)}</code>).</p>",
        "<h2>Predicted aligned error</h2>",
        f'<img alt="PAE of {html.escape(target)}" src="{_data_uri(pae_figure)}">',
        '<p class="caption">PAE (Å) of the top-ranked sample: the colour at row i, column j is the expected '
        "error of token j's position when the prediction and the truth are aligned on token i. Dark green is "
        "low error. Blocks on the diagonal are chains (black lines mark chain boundaries); low error in an "
        "off-diagonal block means the relative placement of two chains is confident.</p>",
        "<h2>pLDDT per residue</h2>",
        f'<img alt="pLDDT of {html.escape(target)}" src="{_data_uri(plddt_png(chains, plddt, label))}">',
        '<p class="caption">Predicted local distance difference test (0-100) per residue (mean over its '
        "atoms), coloured by AF3's bands: dark blue above 90 (very high), light blue 70-90 (confident), "
        "yellow 50-70 (low), orange below 50 (very low, often disordered). Vertical lines separate chains."
        "</p>",
        "<h2>Ranking of all samples</h2>",
        _table(
            ["seed", "sample", "ranking score", "pTM", "ipTM", "max ipSAE", "fraction disordered", "clash"],
            rows,
            {top} if top is not None else set(),
        ),  # fmt: skip
        '<p class="caption">Every seed and diffusion sample, ranked by AF3\'s score 0.8 ipTM + 0.2 pTM + 0.5 '
        "fraction disordered - 100 has_clash (pTM alone for one chain); the highlighted row is the "
        "top-ranked model shown here. ipSAE is the best chain-pair interface score (0-1, higher is better; "
        "docs/outputs.md).</p>",
        "<h2>Top-ranked model in 3-D</h2>",
        '<div id="viewer"></div>',
        '<p class="caption">Drag to rotate, scroll to zoom. Cartoon and bonds for polymers, sticks for '
        "ligands, coloured by pLDDT with the same bands as above (a model whose atoms mostly lack bonded "
        "neighbours, as from untrained weights, is drawn as spheres).</p>",
    ]
    if evaluation is not None:
        parts += [
            "<h2>Against the reference structure</h2>",
            evaluation_html(evaluation),
            '<p class="caption">lDDT (0-1, higher is better) and TM-score (0-1, above 0.5 the same fold) '
            "compare the model with the experimental structure; RMSDs are in Å after superposition (lower "
            "is better); DockQ above 0.23 is an acceptable interface, above 0.49 medium, above 0.80 high "
            "quality; a ligand pose succeeds below 2 Å pocket-aligned RMSD. The highlighted row is the "
            "top-ranked sample. Definitions: docs/outputs.md.</p>",
        ]
    cif_text = model_cif.read_text().replace("</", "<\\/")
    scripts = (
        f'<script type="text/plain" id="model-cif">{cif_text}</script>\n'
        f"<script>{viewer_js}</script>\n<script>{_band_colour_js()}\n{VIEWER_SCRIPT}</script>"
    )
    return _page(title, "\n".join(parts), scripts)


def _page(title: str, body: str, scripts: str) -> str:
    return (
        f'<!doctype html>\n<html lang="en"><head><meta charset="utf-8"><title>{html.escape(title)}</title>'
        f"<style>{PAGE_STYLE}</style></head>\n<body>\n{body}\n{scripts}\n</body></html>\n"
    )


def write_target_page(
    target: str,
    pred_dir: Path,
    viewer_js: Path,
    out: Path,
    evaluation: Path | None = None,
    failed: Path | None = None,
) -> None:
    """results/report/{target}.html (atomic): `target_page` with the evaluation JSON and the failure
    reason read from their files when they exist."""
    result = json.loads(evaluation.read_text()) if evaluation and evaluation.is_file() else None
    failure = failed.read_text().strip() if failed and failed.is_file() else None
    write_text_atomic(out, target_page(target, pred_dir, viewer_js.read_text(), result, failure))


def write_training_png(metrics_csv: Path, stage: int, out: Path) -> None:
    """results/report/training/stage{k}.png (atomic)."""
    write_bytes_atomic(out, training_png(metrics_csv, stage))
