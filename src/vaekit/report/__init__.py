"""One self-contained ``report.html`` for a run folder, with an interactive latent explorer.

The page needs no network: styles, script, figures (PNG data URIs) and data are all inline.
The explorer embeds decoder means precomputed on a regular grid over a 2-D latent plane and
snaps the pointer to the nearest grid node, so the value it shows is exactly
``model.decode(z).mean`` at the z it shows (stored as float32). For ``z_dim > 2`` the plane is a
slice through the two most informative latent dimensions (highest mean KL, or posterior-mean
variance where the KL does not split: :func:`vaekit.plots.rank_latents`) with the others at 0;
the page says which, with their scores. Latent dimensions are numbered from 0 (z0, z1, ...).
Images are drawn as images, curves (data of shape (P, 2)) as polylines with equal aspect.

The page's skeleton, styles and script are package data next to this file: ``template.html``
(filled with :meth:`str.format`, so it holds no other braces), ``style.css`` and ``explorer.js``.
"""

from __future__ import annotations

import base64
import functools
import html
import json
import math
from importlib import resources
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import runfolder as runs
from vaekit.design import adherence_notes
from vaekit.distributions import posterior_mean
from vaekit.formatting import format_value
from vaekit.plots import data_view, rank_latents

GRID_MAX = 64
GRID_MIN = 16
GRID_FLOAT_BUDGET = 600_000  # decoded floats embedded in the page, over all conditions (~3 MB base64)
BACKGROUND_POINTS = 1500
CONTINUOUS_STEPS = 9


# ---------------------------------------------------------------------------- explorer data
def _b64(array: np.ndarray) -> str:
    return base64.b64encode(np.ascontiguousarray(array, dtype="<f4").tobytes()).decode("ascii")


def _subsample(n: int, k: int) -> np.ndarray:
    if n <= k:
        return np.arange(n)
    return np.sort(np.random.default_rng(0).choice(n, size=k, replace=False))


def explorer_conditions(model, data: runs.RunData | None, label_names: list[str] | None = None) -> list[dict[str, Any]]:
    """The condition values the explorer offers: [{"label": text, "value": label or vector}].

    One entry per class for a one-hot model; ``CONTINUOUS_STEPS`` values between the 2nd and
    98th percentile of the training condition for a 1-D continuous model; the mean condition
    for a wider continuous one; a single ``None`` entry for an unconditional model.
    """
    spec = model.condition
    if spec is None:
        return [{"label": "none", "value": None}]
    if spec.kind == "onehot":
        names = label_names or [str(i) for i in range(spec.n_classes)]
        return [{"label": f"{i}: {names[i]}" if names[i] != str(i) else str(i), "value": i} for i in range(spec.n_classes)]
    values = None if data is None or data.condition is None else np.asarray(data.condition, dtype=np.float64)
    if spec.dim == 1:
        if values is None:
            steps = np.linspace(-1.0, 1.0, CONTINUOUS_STEPS)
        else:
            lo, hi = np.quantile(values[:, 0], [0.02, 0.98])
            steps = np.linspace(lo, hi, CONTINUOUS_STEPS)
        return [{"label": format_value(v, 3), "value": [float(np.float32(v))]} for v in steps]
    mean = np.zeros(spec.dim) if values is None else values.mean(0)
    vector = [float(np.float32(v)) for v in mean]
    return [{"label": "mean condition " + ", ".join(format_value(v, 3) for v in vector), "value": vector}]


@torch.no_grad()
def explorer_payload(model, data: runs.RunData | None = None, *, label_names: list[str] | None = None) -> dict[str, Any]:
    """Everything the page's explorer script needs, JSON-ready.

    Keys: ``dims`` (the two latent dimensions shown), ``z_dim``, ``lo``/``hi`` (plane range),
    ``nx``/``ny`` (grid nodes), ``axes`` (node coordinates), ``conditions`` (one base64 float32
    grid of decoder means, (ny, nx, D) row-major, per condition), ``view`` ("points", "image",
    "curve" or "bars"), ``ranking`` (how the dims were chosen: measure and per-dim scores, or
    None), background points in latent and data space.
    """
    model = model.eval()
    z_dim, x_dim = model.z_dim, model.x_dim
    conditions = explorer_conditions(model, data, label_names)
    z_bg = None
    if data is not None:
        idx = _subsample(len(data.x), BACKGROUND_POINTS)
        x_bg = data.x[idx]
        c_bg = None if data.condition is None else data.condition[idx]
        z_bg = posterior_mean(model.encode(x_bg, c_bg)).cpu().numpy().astype(np.float64)  # (M, Z)
    ranking = None
    if z_dim > 2 and data is not None:
        ranking = rank_latents(model, x_bg, c_bg)  # the two most informative dimensions
        dims = list(ranking.dims)
    else:
        dims = list(range(min(z_dim, 2)))
    lo, hi = [], []
    for d in dims:
        a, b = (-3.0, 3.0) if z_bg is None else np.quantile(z_bg[:, d], [0.005, 0.995])
        lo.append(float(min(-3.0, a - 0.5)))
        hi.append(float(max(3.0, b + 0.5)))
    side = int(math.sqrt(GRID_FLOAT_BUDGET / (x_dim * len(conditions))))
    n = max(GRID_MIN, min(GRID_MAX, side))
    nx, ny = n, (n if len(dims) == 2 else 1)
    axes = [np.linspace(lo[i], hi[i], nx if i == 0 else ny).astype(np.float32) for i in range(len(dims))]
    z = np.zeros((ny, nx, z_dim), dtype=np.float32)
    z[..., dims[0]] = axes[0][None, :]
    if len(dims) == 2:
        z[..., dims[1]] = axes[1][:, None]
    z = z.reshape(-1, z_dim)
    grids = []
    for cond in conditions:
        c = cond["value"]
        if isinstance(c, list):  # one continuous value vector for every node
            c = np.tile(np.asarray(c, dtype=np.float32), (len(z), 1))
        mean = model.decode(z, c).mean.cpu().numpy().astype(np.float32)  # (ny * nx, D)
        grids.append({"label": cond["label"], "value": cond["value"], "grid": _b64(mean)})
    shape = data_view(tuple(getattr(model, "x_shape", (x_dim,))))
    view = "points" if x_dim == 2 else shape.kind if shape.kind != "table" else "bars"
    payload: dict[str, Any] = {
        "z_dim": z_dim,
        "x_dim": x_dim,
        "dims": dims,
        "lo": lo,
        "hi": hi if len(dims) == 2 else hi + [1.0],
        "nx": nx,
        "ny": ny,
        "axes": [a.tolist() for a in axes],
        "conditions": grids,
        "condition_kind": None if model.condition is None else model.condition.kind,
        "view": view,
        "image_side": shape.image[0] if view == "image" and shape.image[0] == shape.image[1] else None,
        "image_shape": list(shape.image) if view == "image" else None,
        "curve": {"points": shape.points, "channels_last": shape.channels_last} if view == "curve" else None,
        "ranking": None if ranking is None else {"measure": ranking.measure, "scores": [float(v) for v in ranking.scores]},
        "columns": data.columns if data is not None else [f"x{i}" for i in range(x_dim)],
    }
    if len(dims) == 1:
        payload["lo"] = lo + [0.0]
    if z_bg is not None:
        payload["z_points"] = _b64(z_bg[:, dims])
        # The explorer colours classes; a continuous label (a float column) has no classes to colour.
        classes = data.labels is not None and np.issubdtype(np.asarray(data.labels).dtype, np.integer)
        payload["z_labels"] = data.labels[idx].astype(int).tolist() if classes else None
        if view == "points":
            payload["x_points"] = _b64(x_bg)
    return payload


# ---------------------------------------------------------------------------- page
METRIC_NOTES = {
    "evaluated_on": "the data the metrics are computed on",
    "held_out": "true: data the model was not trained on; false: its training data; n/a: given to evaluate --data",
    "baselines_note": "what the baselines model, where it differs from the model",
    "reconstruction_mse": "mean squared error per element between x and the decoder mean at the posterior mean",
    "pca_mse": "the same for PCA with pca_components components, fitted on the training data",
    "pca_components": "components of the PCA/PPCA baselines: min(z_dim, number of columns)",
    "ppca_nll": "-log p(x) under probabilistic PCA of the same latent size, fitted on the training data",
    "ppca_sigma2": "PPCA's noise variance (mean of the discarded eigenvalues)",
    "ppca_gap_se": "paired standard error of iwae_nll - ppca_nll: a gap within t's 95% quantile of these is noise",
    "ppca_gap_top_point": "the point whose NLL is furthest above PPCA's (its index, from 0, in these rows)",
    "ppca_gap_top_row": "that point's row in the whole data set (from 0), when these rows are a part of it",
    "ppca_gap_whole_points": "points whose gap alone is at least the total gap",
    "ppca_gap_top": "that point's -log p(x) minus PPCA's, nats",
    "ppca_gap_without_top": "iwae_nll - ppca_nll over the other points",
    "ppca_gap_without_top_se": "paired standard error of ppca_gap_without_top",
    "ppca_gap_top_column": "the column (from 0) in which that point lies furthest outside the training rows' range",
    "ppca_gap_top_value": "that point's value in that column",
    "ppca_gap_top_train_range": "the training rows' [min, max] in that column",
    "ppca_sigma2_floored": "true: PPCA's noise variance was raised to its floor (1e-6 x mean eigenvalue)",
    "baselines_fitted_on": "the data the PCA/PPCA baselines were fitted on",
    "neg_elbo": "negative ELBO, nats per point (an upper bound on -log p(x))",
    "reconstruction_nll": "-E_q[log p(x|z)], nats per point",
    "kl": "KL(q(z|x) || p(z)), nats per point",
    "kl_per_dim": "KL per latent dimension (about 0: an unused dimension)",
    "latent_mean_variance": "variance of the posterior means per latent dimension",
    "active_units": "latent dimensions whose posterior mean varies (> 0.01)",
    "iwae_nll": "importance-weighted estimate of -log p(x), nats per point (tighter than neg_elbo)",
    "iwae_nll_se": "standard error of iwae_nll",
    "quadrature_nll": "-log p(x) by numerical integration over the 2-D latent plane, nats per point",
    "true_nll": "-log p(x) under the true ring density: no model beats this on average",
    "ring_entropy": "expected value of true_nll (closed form)",
    "diversity": "the lecture's diversity: mean per-dimension variance of model samples",
    "data_diversity": "the same for the data",
    "mmd2": "squared MMD between model samples and data (0: indistinguishable)",
    "mmd_p_value": "permutation p-value of the MMD test (small: samples are distinguishable from data)",
    "energy_distance": "energy distance between model samples and data",
    "modes_covered": "ring modes that receive samples",
    "mode_coverage": "share of the ring modes covered",
    "within_3std": "share of samples within 3 std of a mode centre",
    "latent_knn_accuracy": "5-NN accuracy of the data labels from posterior means",
    "condition_accuracy": "share of samples for label y whose nearest data points have label y",
    "mode_adherence": "share of label-conditioned samples within 3 std of the requested mode",
    "condition_mae": "mean absolute error between requested and realised condition",
    "perplexity": "exp(entropy) of the code frequencies over all points (K: every code equally used)",
    "codes_used": "codebook vectors assigned to at least one point",
    "codebook_size": "K, the number of codebook vectors",
    "code_grid": "G, the codes per point (grid positions of a conv trunk; 1 for the MLP)",
    "prior_nll_codes": "-log p(codes) of the data's code grids under the fitted code prior, nats per point",
} | adherence_notes()


# A list of names longer than this is shown as "784 columns: pixel0, pixel1, pixel2, …, pixel783".
LONG_LIST = 12


def names_summary(names: list[Any], what: str = "columns") -> str:
    """A list of names for people: all of them when short, else the count, the first three and the last."""
    shown = [str(n) for n in names]
    if len(shown) <= LONG_LIST:
        return ", ".join(shown) if shown else "none"
    return f"{len(shown)} {what}: {', '.join(shown[:3])}, …, {shown[-1]}"


def _cell(value: Any) -> str:
    if isinstance(value, list) and len(value) > LONG_LIST and all(isinstance(v, str) for v in value):
        return names_summary(value)
    return format_value(value, missing="n/a")


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] | None) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_cell(v))}</td></tr>" for k, v in rows)
    thead = f"<thead><tr><th>{head[0]}</th><th>{head[1]}</th></tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _json_script(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


@functools.cache
def _asset(name: str) -> str:
    """The text of package data file ``name`` (template.html, style.css, explorer.js), read once."""
    return resources.files(__name__).joinpath(name).read_text(encoding="utf-8")


def render_html(
    *,
    title: str,
    subtitle: str,
    config: dict[str, dict[str, Any]],
    config_text: str,
    metrics: dict[str, Any],
    figures: dict[str, bytes],
    explorer: dict[str, Any],
    summary: list[tuple[str, Any]],
    warnings: list[str] | None = None,
) -> str:
    """The report page as one string (no external resources); ``warnings`` go in a box at the top."""
    dims = explorer["dims"]
    notes = []
    if explorer["z_dim"] > 2:
        others = [i for i in range(explorer["z_dim"]) if i not in dims]
        ranking = explorer.get("ranking")
        if ranking is None:
            why = "no data to rank the dimensions by"
        else:
            scores = ", ".join(f"z{d}: {ranking['measure']} {format_value(ranking['scores'][d], 3)}" for d in dims)
            why = f"the two most informative by {html.escape(ranking['measure'])}: {html.escape(scores)}"
        notes.append(
            f"The latent space has {explorer['z_dim']} dimensions (numbered from 0): this plane is the slice through "
            f"z{dims[0]} and z{dims[1]} ({why}), with z{', z'.join(map(str, others))} fixed at 0."
        )
    if explorer["z_dim"] == 1:
        notes.append("The latent space has 1 dimension: only the horizontal position matters.")
    notes.append(
        f"Decoded means are precomputed on a {explorer['nx']}&times;{explorer['ny']} grid; the pointer snaps to the "
        "nearest grid node, so the readout is the decoder mean at exactly the z shown."
    )
    control = ""
    if explorer["condition_kind"] == "onehot":
        options = "".join(f'<option value="{i}">{html.escape(c["label"])}</option>' for i, c in enumerate(explorer["conditions"]))
        control = f'<label>condition <select id="condition">{options}</select></label>'
    elif explorer["condition_kind"] == "continuous":
        n = len(explorer["conditions"]) - 1
        control = (
            f'<label>condition <input id="condition" type="range" min="0" max="{n}" step="1" value="{n // 2}"></label>'
            ' <span id="condition-value"></span>'
        )
    figure_html = "".join(
        f'<figure><img alt="{html.escape(key)}" src="data:image/png;base64,{base64.b64encode(png).decode("ascii")}">'
        f"<figcaption>{html.escape(key)}</figcaption></figure>"
        for key, png in figures.items()
    )
    settings = "".join(
        f"<h3>[{html.escape(section)}]</h3>" + _table(list(values.items()), ("setting", "value"))
        for section, values in config.items()
    )
    metric_table = _curve_tables(metrics) + _metric_table(metrics)
    return _asset("template.html").format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        warnings="".join(f'<div class="warning" role="alert"><b>Warning.</b> {html.escape(w)}</div>' for w in warnings or ()),
        notes="".join(f"<p class=note>{n}</p>" for n in notes),
        control=control,
        summary=_table(summary, None),
        metrics=metric_table or "<p>No metrics.</p>",
        figures=figure_html or "<p>No figures.</p>",
        settings=settings,
        config_text=html.escape(config_text),
        data=_json_script("explorer-data", explorer),
        script=_asset("explorer.js"),
        style=_asset("style.css"),
    )


def build_report(run_dir: str | Path, *, data: runs.RunData | None = None, model=None, name: str | None = None) -> str:
    """The report of run folder ``run_dir`` as HTML text (reads model, config, metrics, figures).

    ``data`` and ``model`` save reloading them; ``name`` is the run's name in the title (default:
    the folder's name).
    """
    from vaekit.io import load

    run_dir = runs.require_run(run_dir)
    model = load(run_dir) if model is None else model
    config_path = run_dir / runs.CONFIG
    config = runs.read_config(config_path)
    info = runs.read_json(run_dir / runs.RUN_INFO) if (run_dir / runs.RUN_INFO).is_file() else {}
    if data is None:
        try:
            data = runs.load_data(config)
        except (ValueError, TypeError, OSError):
            data = None  # the data file moved: the explorer works without background points
    metrics = runs.read_json(run_dir / runs.METRICS) if (run_dir / runs.METRICS).is_file() else {}
    figures = {p.stem: p.read_bytes() for p in sorted((run_dir / runs.FIGURES).glob("*.png"))}
    explorer = explorer_payload(model, data, label_names=info.get("label_names"))
    summary: list[tuple[str, Any]] = [("data", info.get("data", data.description if data else "?"))]
    if info.get("columns"):
        summary.append(("columns", names_summary(info["columns"])))
    if info.get("label"):
        summary.append(("label (colours the plots)", info["label"]))
    for key in ("epochs_trained", "train_seconds", "vaekit_version", "command"):
        if key in info:
            summary.append((key.replace("_", " "), info[key]))
    return render_html(
        title=f"vaekit run: {name or run_dir.resolve().name}",
        subtitle=f"{type(model).__name__} x_dim={model.x_dim}, z_dim={model.z_dim}, hidden={list(model.hidden)}",
        config=config,
        config_text=config_path.read_text(encoding="utf-8"),
        metrics=metrics,
        figures=figures,
        explorer=explorer,
        summary=summary,
        warnings=_all_warnings(metrics),
    )


def _all_warnings(metrics: dict[str, Any]) -> list[str]:
    """The run's warnings, then each added column's (``vaekit evaluate --add-to-report``), named by its label."""
    out = [w for w in metrics.get("warnings") or () if isinstance(w, str)]
    for label, values in (metrics.get("added") or {}).items():
        if isinstance(values, dict):
            out += [f"{label}: {w}" for w in values.get("warnings") or () if isinstance(w, str)]
    return out


def _metric_table(metrics: dict[str, Any]) -> str:
    """The metrics of metrics.json as one table, a column per evaluated dataset (held-out, train, added).

    A warning of the metrics (no held-out data) stands above the table; "" when there are no metrics.
    """
    columns = [(heading, _shown_metrics(values)) for heading, values in runs.metric_columns(metrics)]
    names = list(dict.fromkeys(k for _, values in columns for k in values if k != "warning"))
    if not names:
        return ""
    rows = "".join(
        f"<tr><th>{html.escape(k)}</th>"
        + "".join(f"<td>{html.escape(format_value(values.get(k), missing='n/a'))}</td>" for _, values in columns)
        + f"<td class=note>{html.escape(METRIC_NOTES.get(k, ''))}</td></tr>"
        for k in names
    )
    head = "".join(f"<th>{html.escape(heading)}</th>" for heading, _ in columns)
    warning = metrics.get("warning")
    loud = f"<p class=warning><strong>Warning: {html.escape(warning)}.</strong></p>" if warning else ""
    return f"{loud}<table><thead><tr><th>metric</th>{head}<th>meaning</th></tr></thead><tbody>{rows}</tbody></table>"


def _curve_tables(metrics: dict[str, Any]) -> str:
    """One "model vs PCA (k components)" table per evaluated dataset whose metrics have ``curves``; "" when none has.

    Rows are :func:`vaekit.shape_metrics.comparison_rows`: the model, PCA, the data's own value
    and which of model and PCA does better.
    """
    from vaekit.shape_metrics import comparison_rows

    out = []
    for heading, values in runs.metric_columns(metrics):
        curves = values.get("curves")
        if not isinstance(curves, dict):
            continue
        rows = "".join(
            f"<tr><th>{html.escape(label)}</th>"
            + "".join(f"<td>{html.escape(format_value(v, 4, missing='n/a'))}</td>" for v in (a, b))
            + f"<td>{'' if ref is None else html.escape(format_value(ref, 4))}</td>"
            + f"<td>{html.escape(verdict if verdict != 'pca' else 'PCA')}</td><td class=note>{html.escape(meaning)}</td></tr>"
            for label, a, b, ref, verdict, meaning in comparison_rows(curves)
        )
        k, n = curves.get("components"), curves.get("n_samples")
        fitted = "the training data" if values.get("baselines_fitted_on") == "train_x" else "these data (in-sample)"
        out.append(
            f"<h3>model vs PCA ({k} components): {html.escape(heading)}</h3>"
            f"<p class=note>Curves of shape (P, 2). Errors and geometry in the data's units (chord for airfoils); "
            f"samples: {n} of the model (decoder means at z ~ p(z)) and {n} of PCA (mean + sum of sqrt(eigenvalue) "
            f"x N(0, 1) x component); PCA is fitted on {fitted}. <em>better</em>: which of the two does better on "
            "the row.</p>"
            "<table class=curves><thead><tr><th>metric</th><th>model</th><th>PCA</th><th>data</th><th>better</th>"
            f"<th>meaning</th></tr></thead><tbody>{rows}</tbody></table>"
        )
    return "".join(out)


def _shown_metrics(metrics: dict[str, Any]) -> dict[str, Any]:
    """The metrics table: numbers (and kl_per_dim), then each metric the model left out, with its reason."""
    shown = {k: v for k, v in metrics.items() if not isinstance(v, (dict, list)) or k == "kl_per_dim"}
    notes = metrics.get("notes")
    for key, reason in notes.items() if isinstance(notes, dict) else ():
        shown[key] = f"not applicable: {reason}"
    return shown


def write_report(run_dir: str | Path, *, data: runs.RunData | None = None, model=None, name: str | None = None) -> Path:
    """Write ``run_dir/report.html`` atomically; return its path (arguments as :func:`build_report`)."""
    from vaekit.io import atomic_write_text

    text = build_report(run_dir, data=data, model=model, name=name)
    path = Path(run_dir) / runs.REPORT
    atomic_write_text(path, text)
    return path


# ---------------------------------------------------------------------------- figures
def run_figures(model, data: runs.RunData, history=None, *, seed: int = 0, units: str = "data") -> dict[str, Any]:
    """The run's figures (:func:`vaekit.plots.run_figures`) on its training data, keyed by file stem.

    ``units="standardized"`` draws a standardising model's data-space panels in its standardised units.
    """
    import matplotlib

    matplotlib.use("Agg")  # no display needed, also on a desktop
    from vaekit.plots import run_figures as figures

    return dict(
        figures(model, data.x, data.condition, labels=data.labels, history=history, seed=seed, columns=data.columns, units=units)
    )


def redraw_figures(run_dir: str | Path, *, units: str = "data") -> list[Path]:
    """Redraw ``run_dir/figures/*.png`` from the saved model, history and training data (e.g. in other ``units``)."""
    from vaekit.history import History
    from vaekit.io import load

    run_dir = runs.require_run(run_dir)
    model = load(run_dir)
    data = runs.load_data(runs.read_config(run_dir / runs.CONFIG))
    history = History.from_csv(run_dir / runs.HISTORY) if (run_dir / runs.HISTORY).is_file() else None
    return runs.save_figures(run_dir / runs.FIGURES, run_figures(model, data, history, units=units))
