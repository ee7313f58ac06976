"""One self-contained ``report.html`` for a run folder, with an interactive latent explorer.

The page needs no network: styles, script, figures (PNG data URIs) and data are all inline.
The explorer embeds decoder means precomputed on a regular grid over a 2-D latent plane and
snaps the pointer to the nearest grid node, so the value it shows is exactly
``model.decode(z).mean`` at the z it shows (stored as float32). For ``z_dim > 2`` the plane is a
slice through the two most used latent dimensions with the others at 0; the page says so.
"""

from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from vaekit import runs
from vaekit.distributions import posterior_mean
from vaekit.plots import image_shape_for

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
        return [{"label": f"{v:.3g}", "value": [float(np.float32(v))]} for v in steps]
    mean = np.zeros(spec.dim) if values is None else values.mean(0)
    vector = [float(np.float32(v)) for v in mean]
    return [{"label": "mean condition " + ", ".join(f"{v:.3g}" for v in vector), "value": vector}]


@torch.no_grad()
def explorer_payload(model, data: runs.RunData | None = None, *, label_names: list[str] | None = None) -> dict[str, Any]:
    """Everything the page's explorer script needs, JSON-ready.

    Keys: ``dims`` (the two latent dimensions shown), ``z_dim``, ``lo``/``hi`` (plane range),
    ``nx``/``ny`` (grid nodes), ``axes`` (node coordinates), ``conditions`` (one base64 float32
    grid of decoder means, (ny, nx, D) row-major, per condition), ``view`` ("points", "image" or
    "bars"), background points in latent and data space.
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
    if z_dim > 2 and z_bg is not None:
        dims = sorted(np.argsort(-z_bg.var(0))[:2].tolist())  # the two most used dimensions
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
    image = image_shape_for(tuple(getattr(model, "x_shape", (x_dim,))))
    view = "points" if x_dim == 2 else "image" if image is not None and image[0] == image[1] else "bars"
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
        "image_side": image[0] if view == "image" else None,
        "columns": data.columns if data is not None else [f"x{i}" for i in range(x_dim)],
    }
    if len(dims) == 1:
        payload["lo"] = lo + [0.0]
    if z_bg is not None:
        payload["z_points"] = _b64(z_bg[:, dims])
        payload["z_labels"] = None if data.labels is None else data.labels[idx].astype(int).tolist()
        if view == "points":
            payload["x_points"] = _b64(x_bg)
    return payload


# ---------------------------------------------------------------------------- page
def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return "n/a" if not math.isfinite(value) else f"{value:.6g}"
    if isinstance(value, list):
        return "[" + ", ".join(_fmt(v) for v in value) + "]"
    if value is None:
        return "n/a"
    return str(value)


METRIC_NOTES = {
    "evaluated_on": "the data the metrics are computed on",
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
}


def _table(rows: list[tuple[str, Any]], head: tuple[str, str] | None) -> str:
    body = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td></tr>" for k, v in rows)
    thead = f"<thead><tr><th>{head[0]}</th><th>{head[1]}</th></tr></thead>" if head else ""
    return f"<table>{thead}<tbody>{body}</tbody></table>"


def _json_script(element_id: str, value: Any) -> str:
    text = json.dumps(value, separators=(",", ":")).replace("</", "<\\/")
    return f'<script type="application/json" id="{element_id}">{text}</script>'


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
) -> str:
    """The report page as one string (no external resources)."""
    dims = explorer["dims"]
    notes = []
    if explorer["z_dim"] > 2:
        others = [i for i in range(explorer["z_dim"]) if i not in dims]
        notes.append(
            f"The latent space has {explorer['z_dim']} dimensions: this plane is the slice through "
            f"z{dims[0]} and z{dims[1]} (the two most used), with z{', z'.join(map(str, others))} fixed at 0."
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
    metric_rows = "".join(
        f"<tr><th>{html.escape(k)}</th><td>{html.escape(_fmt(v))}</td>"
        f"<td class=note>{html.escape(METRIC_NOTES.get(k, ''))}</td></tr>"
        for k, v in metrics.items()
    )
    metric_table = (
        f"<table><thead><tr><th>metric</th><th>value</th><th>meaning</th></tr></thead><tbody>{metric_rows}</tbody></table>"
    )
    return _PAGE.format(
        title=html.escape(title),
        subtitle=html.escape(subtitle),
        notes="".join(f"<p class=note>{n}</p>" for n in notes),
        control=control,
        summary=_table(summary, None),
        metrics=metric_table if metric_rows else "<p>No metrics.</p>",
        figures=figure_html or "<p>No figures.</p>",
        settings=settings,
        config_text=html.escape(config_text),
        data=_json_script("explorer-data", explorer),
        script=_SCRIPT,
        style=_STYLE,
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
    for key in ("epochs_trained", "train_seconds", "vaekit_version", "command"):
        if key in info:
            summary.append((key.replace("_", " "), info[key]))
    return render_html(
        title=f"vaekit run: {name or run_dir.resolve().name}",
        subtitle=f"VAE x_dim={model.x_dim}, z_dim={model.z_dim}, hidden={list(model.hidden)}",
        config=config,
        config_text=config_path.read_text(encoding="utf-8"),
        metrics={k: v for k, v in metrics.items() if not isinstance(v, (dict, list)) or k == "kl_per_dim"},
        figures=figures,
        explorer=explorer,
        summary=summary,
    )


def write_report(run_dir: str | Path, *, data: runs.RunData | None = None, model=None, name: str | None = None) -> Path:
    """Write ``run_dir/report.html`` atomically; return its path (arguments as :func:`build_report`)."""
    from vaekit.io import atomic_write_text

    text = build_report(run_dir, data=data, model=model, name=name)
    path = Path(run_dir) / runs.REPORT
    atomic_write_text(path, text)
    return path


_STYLE = """
body{font:15px/1.45 system-ui,sans-serif;margin:0 auto;max-width:1100px;padding:1em 1.5em;color:#222;background:#fff}
h1{margin-bottom:0}.sub{color:#555;margin-top:.2em}h2{border-bottom:1px solid #ddd;padding-bottom:.2em;margin-top:1.6em}
table{border-collapse:collapse;margin:.4em 0}th,td{border:1px solid #ddd;padding:.2em .6em;text-align:left;
font-variant-numeric:tabular-nums}th{background:#f5f5f5;font-weight:600}
.explorer{display:flex;flex-wrap:wrap;gap:1.2em;align-items:flex-start}
.explorer>div{flex:0 0 auto;width:424px}
canvas{border:1px solid #bbb;background:#fff;touch-action:none}#latent{cursor:crosshair}
#readout{display:block;overflow-wrap:anywhere;font-family:ui-monospace,monospace;white-space:pre-wrap;margin:.5em 0}
.note{color:#555;font-size:.9em}figure{display:inline-block;margin:.5em;vertical-align:top}
figure img{max-width:520px;border:1px solid #eee}figcaption{text-align:center;color:#555}
pre{background:#f7f7f7;padding:.8em;overflow:auto}
"""

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title><style>{style}</style></head>
<body>
<h1>{title}</h1><p class="sub">{subtitle}</p>
{summary}
<h2>Latent explorer</h2>
<p>Move the pointer over the latent plane (left; or click it and use the arrow keys): the decoder's output at
that z is shown on the right. The dots are the training data's posterior means.</p>
<div class="controls">{control}</div>
<div class="explorer">
<div><canvas id="latent" width="420" height="420" tabindex="0" aria-label="latent plane (pointer or arrow keys)"></canvas></div>
<div><canvas id="output" width="420" height="420" aria-label="decoded output"></canvas>
<output id="readout" for="latent"></output></div>
</div>
{notes}
<h2>Metrics</h2>
{metrics}
<h2>Figures</h2>
{figures}
<h2>Settings</h2>
{settings}
<details><summary>config.toml</summary><pre>{config_text}</pre></details>
{data}
<script>{script}</script>
</body></html>
"""

_SCRIPT = r"""
"use strict";
(function () {
  const P = JSON.parse(document.getElementById("explorer-data").textContent);
  const f32 = (b64) => {
    const raw = atob(b64), bytes = new Uint8Array(raw.length);
    for (let i = 0; i < raw.length; i++) bytes[i] = raw.charCodeAt(i);
    return new Float32Array(bytes.buffer);
  };
  const grids = P.conditions.map((c) => f32(c.grid));
  const D = P.x_dim, NX = P.nx, NY = P.ny;
  const palette = ["#1f77b4","#ff7f0e","#2ca02c","#d62728","#9467bd","#8c564b","#e377c2","#7f7f7f","#bcbd22","#17becf"];
  const latent = document.getElementById("latent"), output = document.getElementById("output");
  const readout = document.getElementById("readout"), control = document.getElementById("condition");
  const lctx = latent.getContext("2d"), octx = output.getContext("2d");
  const PAD = 30;
  let cond = control ? Number(control.value) : 0, node = null;

  // Latent plane <-> pixels. Node (i, j) sits at axes[0][i], axes[1][j].
  const W = latent.width, H = latent.height;
  const sx = (v) => PAD + (v - P.lo[0]) / (P.hi[0] - P.lo[0]) * (W - 2 * PAD);
  const sy = (v) => H - PAD - (v - P.lo[1]) / (P.hi[1] - P.lo[1]) * (H - 2 * PAD);
  const nodeX = (i) => P.axes[0][i];
  const nodeY = (j) => (NY > 1 ? P.axes[1][j] : (P.lo[1] + P.hi[1]) / 2);

  const zPoints = P.z_points ? f32(P.z_points) : null;
  const xPoints = P.x_points ? f32(P.x_points) : null;

  function frame(ctx, lo, hi, names) {
    const w = ctx.canvas.width, h = ctx.canvas.height;
    ctx.strokeStyle = "#999"; ctx.strokeRect(PAD, PAD, w - 2 * PAD, h - 2 * PAD);
    ctx.fillStyle = "#444"; ctx.font = "11px sans-serif";
    ctx.fillText(lo[0].toFixed(1), PAD, h - PAD + 14); ctx.fillText(hi[0].toFixed(1), w - PAD - 20, h - PAD + 14);
    ctx.fillText(names[0], w / 2 - 8, h - 8);
    if (names[1] !== null) {
      ctx.fillText(hi[1].toFixed(1), 2, PAD + 4); ctx.fillText(lo[1].toFixed(1), 2, h - PAD);
      ctx.save(); ctx.translate(12, h / 2); ctx.rotate(-Math.PI / 2); ctx.fillText(names[1], 0, 0); ctx.restore();
    }
  }

  function drawLatent() {
    lctx.clearRect(0, 0, W, H);
    frame(lctx, P.lo, P.hi, ["z" + P.dims[0], NY > 1 ? "z" + P.dims[1] : null]);
    if (zPoints) {
      const k = NY > 1 ? 2 : 1;
      for (let m = 0; m < zPoints.length / k; m++) {
        const lab = P.z_labels ? P.z_labels[m] : 0;
        lctx.fillStyle = P.z_labels ? palette[lab % palette.length] + "66" : "#55555544";
        const y = k === 2 ? sy(zPoints[2 * m + 1]) : H / 2 + ((m * 37) % 60) - 30;
        lctx.fillRect(sx(zPoints[k * m]) - 1.5, y - 1.5, 3, 3);
      }
    }
    if (node) {
      const x = sx(nodeX(node[0])), y = NY > 1 ? sy(nodeY(node[1])) : H / 2;
      lctx.strokeStyle = "#d00"; lctx.lineWidth = 2;
      lctx.beginPath(); lctx.arc(x, y, 6, 0, 2 * Math.PI); lctx.stroke(); lctx.lineWidth = 1;
    }
  }

  // Data-space view for 2-D data: fixed range from the training points and every decoded node.
  let xlo = [Infinity, Infinity], xhi = [-Infinity, -Infinity];
  if (P.view === "points") {
    const widen = (arr) => { for (let m = 0; m < arr.length; m += 2) for (let d = 0; d < 2; d++) {
      if (isFinite(arr[m + d])) { xlo[d] = Math.min(xlo[d], arr[m + d]); xhi[d] = Math.max(xhi[d], arr[m + d]); } } };
    if (xPoints) widen(xPoints);
    grids.forEach(widen);
    // Equal scales on both axes, so shapes in data space are not distorted.
    const half = 0.55 * Math.max(xhi[0] - xlo[0], xhi[1] - xlo[1], 1e-6);
    for (let d = 0; d < 2; d++) { const mid = (xhi[d] + xlo[d]) / 2; xlo[d] = mid - half; xhi[d] = mid + half; }
  }
  const ox = (v) => PAD + (v - xlo[0]) / (xhi[0] - xlo[0]) * (output.width - 2 * PAD);
  const oy = (v) => output.height - PAD - (v - xlo[1]) / (xhi[1] - xlo[1]) * (output.height - 2 * PAD);

  function current() {
    const g = grids[cond], k = (node[1] * NX + node[0]) * D;
    return Array.from(g.subarray(k, k + D));
  }

  function drawOutput(x) {
    const w = output.width, h = output.height;
    octx.clearRect(0, 0, w, h);
    if (P.view === "points") {
      frame(octx, xlo, xhi, [P.columns[0], P.columns[1]]);
      if (xPoints) {
        octx.fillStyle = "#88888855";
        for (let m = 0; m < xPoints.length; m += 2) octx.fillRect(ox(xPoints[m]) - 1.5, oy(xPoints[m + 1]) - 1.5, 3, 3);
      }
      octx.fillStyle = "#d00"; octx.beginPath(); octx.arc(ox(x[0]), oy(x[1]), 6, 0, 2 * Math.PI); octx.fill();
    } else if (P.view === "image") {
      const s = P.image_side, cell = Math.floor((w - 2 * PAD) / s);
      let lo = Math.min(0, ...x), hi = Math.max(1, ...x);
      for (let r = 0; r < s; r++) for (let c = 0; c < s; c++) {
        const v = Math.round(255 * (1 - (x[r * s + c] - lo) / (hi - lo)));
        octx.fillStyle = `rgb(${v},${v},${v})`; octx.fillRect(PAD + c * cell, PAD + r * cell, cell, cell);
      }
      octx.strokeStyle = "#999"; octx.strokeRect(PAD, PAD, s * cell, s * cell);
    } else {
      const lo = Math.min(0, ...x), hi = Math.max(0, ...x), bw = (w - 2 * PAD) / D;
      const y0 = (v) => h - PAD - (v - lo) / ((hi - lo) || 1) * (h - 2 * PAD);
      octx.fillStyle = "#1f77b4";
      for (let d = 0; d < D; d++) {
        const a = y0(Math.max(0, x[d])), b = y0(Math.min(0, x[d]));
        octx.fillRect(PAD + d * bw, a, Math.max(1, bw - 1), b - a);
      }
      frame(octx, [0, lo], [D, hi], ["dimension", "value"]);
    }
  }

  function update() {
    const x = current();
    const z = new Array(P.z_dim).fill(0);
    z[P.dims[0]] = nodeX(node[0]);
    if (NY > 1) z[P.dims[1]] = nodeY(node[1]);
    const c = P.conditions[cond];
    readout.dataset.z = JSON.stringify(z);
    readout.dataset.x = JSON.stringify(x);
    readout.dataset.condition = JSON.stringify(c.value);
    const show = (v) => v.map((t) => t.toFixed(4)).join(", ");
    const xs = D <= 8 ? show(x) : show(x.slice(0, 8)) + ", ... (" + D + " values)";
    readout.textContent = "z = (" + show(z) + ")" + (c.value === null ? "" : "   condition = " + c.label) + "\nx = (" + xs + ")";
    drawLatent(); drawOutput(x);
    const cv = document.getElementById("condition-value");
    if (cv) cv.textContent = c.label;
  }

  function nearest(v, lo, hi, n) { return Math.max(0, Math.min(n - 1, Math.round((v - lo) / (hi - lo) * (n - 1)))); }

  latent.addEventListener("pointermove", (ev) => {
    const r = latent.getBoundingClientRect();
    const px = (ev.clientX - r.left) * W / r.width, py = (ev.clientY - r.top) * H / r.height;
    const zx = P.lo[0] + (px - PAD) / (W - 2 * PAD) * (P.hi[0] - P.lo[0]);
    const zy = P.lo[1] + (H - PAD - py) / (H - 2 * PAD) * (P.hi[1] - P.lo[1]);
    node = [nearest(zx, P.lo[0], P.hi[0], NX), NY > 1 ? nearest(zy, P.lo[1], P.hi[1], NY) : 0];
    update();
  });
  // Arrow keys step one grid node, for keyboards and precise moves.
  const steps = { ArrowLeft: [-1, 0], ArrowRight: [1, 0], ArrowUp: [0, 1], ArrowDown: [0, -1] };
  latent.addEventListener("keydown", (ev) => {
    const step = steps[ev.key];
    if (!step) return;
    ev.preventDefault();
    node = [Math.max(0, Math.min(NX - 1, node[0] + step[0])), Math.max(0, Math.min(NY - 1, node[1] + step[1]))];
    update();
  });
  if (control) control.addEventListener("input", () => { cond = Number(control.value); update(); });
  // Start at the node nearest z = 0.
  node = [nearest(0, P.lo[0], P.hi[0], NX), NY > 1 ? nearest(0, P.lo[1], P.hi[1], NY) : 0];
  update();
})();
"""


# ---------------------------------------------------------------------------- figures
def run_figures(model, data: runs.RunData, history=None, *, seed: int = 0) -> dict[str, Any]:
    """The run's figures (:func:`vaekit.plots.run_figures`) on its training data, keyed by file stem."""
    import matplotlib

    matplotlib.use("Agg")  # no display needed, also on a desktop
    from vaekit.plots import run_figures as figures

    return dict(figures(model, data.x, data.condition, labels=data.labels, history=history, seed=seed))
