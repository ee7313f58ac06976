
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
  // Curves ((P, 2) data): point k of a flat row is (x, y) = (r[2k], r[2k+1]) channels last,
  // (r[k], r[P+k]) channels first. One fixed, equal-aspect range over every decoded node.
  const CP = P.curve ? P.curve.points : 0;
  const curveXY = (r, k) => (P.curve.channels_last ? [r[2 * k], r[2 * k + 1]] : [r[k], r[CP + k]]);
  if (P.view === "curve") {
    grids.forEach((g) => { for (let m = 0; m < g.length; m += D) for (let k = 0; k < CP; k++) {
      const xy = curveXY(g.subarray(m, m + D), k);
      for (let d = 0; d < 2; d++) if (isFinite(xy[d])) { xlo[d] = Math.min(xlo[d], xy[d]); xhi[d] = Math.max(xhi[d], xy[d]); } } });
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
    } else if (P.view === "curve") {
      frame(octx, xlo, xhi, ["x", "y"]);
      const pixels = [];
      for (let k = 0; k < CP; k++) { const xy = curveXY(x, k); pixels.push([ox(xy[0]), oy(xy[1])]); }
      octx.strokeStyle = "#d00"; octx.lineWidth = 2; octx.beginPath();
      pixels.forEach(([px, py], k) => (k === 0 ? octx.moveTo(px, py) : octx.lineTo(px, py)));
      octx.stroke(); octx.lineWidth = 1;
      output.dataset.polyline = JSON.stringify(pixels);  // the drawn vertices, in canvas pixels
    } else if (P.view === "image") {
      const [ih, iw] = P.image_shape, cell = Math.floor(Math.min((w - 2 * PAD) / iw, (h - 2 * PAD) / ih));
      let lo = Math.min(0, ...x), hi = Math.max(1, ...x);
      for (let r = 0; r < ih; r++) for (let c = 0; c < iw; c++) {
        const v = Math.round(255 * (1 - (x[r * iw + c] - lo) / (hi - lo)));
        octx.fillStyle = `rgb(${v},${v},${v})`; octx.fillRect(PAD + c * cell, PAD + r * cell, cell, cell);
      }
      octx.strokeStyle = "#999"; octx.strokeRect(PAD, PAD, iw * cell, ih * cell);
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
