"""report.html: self-contained, exact explorer data, and a real-browser test of the explorer."""

from __future__ import annotations

import base64
import copy
import json
import os
import re
from pathlib import Path

import numpy as np
import pytest
import torch

import vaekit as vk
from numerics import _report, mlp_rounding_bound, unit_roundoff
from vaekit import cli, report, runfolder, runs

# Cross-implementation comparisons: scripts/portability.sh reruns these under other CPU kernels.
pytestmark = pytest.mark.numerics

ARTIFACTS = Path(__file__).resolve().parents[1] / "test-artifacts"
CHROMIUM = Path("/usr/bin/chromium")


def decoded(model, z, condition=None):
    """Float64 reference of the decoder mean at one z (D,), to check a float32 readout against."""
    return copy.deepcopy(model).double().decode(np.asarray(z, dtype=np.float64)[None], condition).mean.detach()[0]


def assert_readout(actual, expected, model, z, condition=None):
    """The readout (float32 decoder means computed for a whole grid at once) equals the float64
    decoder mean up to float32 rounding of the decoder (tests/numerics.py, mlp_rounding_bound).

    The likelihood head adds one rounding and no growth: a Gaussian mean is h * x_scale + x_shift,
    a Bernoulli mean sigmoid(h) with slope <= 1/4.
    """
    z = torch.as_tensor(np.asarray(z, dtype=np.float64))[None]
    c = model.prepare_condition(condition, 1)
    head_rounding = 2 * unit_roundoff(torch.float32) * expected.abs()
    bound = mlp_rounding_bound(model.decoder, z, c)[0] * model.x_scale.double() + head_rounding
    error = (torch.tensor(np.asarray(actual), dtype=torch.float64) - expected.double()).abs()
    assert bool((error <= bound).all()), f"readout: error {error.tolist()} exceeds the rounding bound {bound.tolist()}"
    _report("readout", float((error / bound).max()), 1.0)


def grid(payload: dict, k: int = 0) -> np.ndarray:
    raw = base64.b64decode(payload["conditions"][k]["grid"])
    return np.frombuffer(raw, dtype="<f4").reshape(payload["ny"], payload["nx"], payload["x_dim"])


def node_z(payload: dict, i: int, j: int) -> np.ndarray:
    z = np.zeros(payload["z_dim"], dtype=np.float32)
    z[payload["dims"][0]] = payload["axes"][0][i]
    if payload["ny"] > 1:
        z[payload["dims"][1]] = payload["axes"][1][j]
    return z


def make_run(tmp: Path, *args: str) -> Path:
    out = tmp / "run"
    small_metrics = ["--eval-k", "5", "--eval-n-samples", "200", "--eval-quadrature-grid", "20", "--eval-permutations", "10"]
    assert cli.main(["train", *args, "--epochs", "5", "--hidden", "32,32", *small_metrics, "-q", "--out", str(out)]) == 0
    return out


@pytest.fixture(scope="module")
def ring_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"), "--data", "ring", "--n", "500")


@pytest.fixture(scope="module")
def cvae_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"), "--data", "ring", "--n", "500", "--condition", "label:onehot")


@pytest.fixture(scope="module")
def radius_run(tmp_path_factory) -> Path:
    return make_run(tmp_path_factory.mktemp("report"), "--data", "ring", "--n", "500", "--condition", "radius:continuous")


def payload_of(page: str) -> dict:
    text = re.search(r'<script type="application/json" id="explorer-data">(.*?)</script>', page, re.S).group(1)
    return json.loads(text.replace("<\\/", "</"))


def test_page_is_self_contained(ring_run):
    page = (ring_run / "report.html").read_text()
    assert not re.search(r"""(src|href)\s*=\s*["']?\s*(https?:)?//""", page, re.I)
    assert "http://" not in page and "https://" not in page
    assert "<link" not in page and not re.search(r"<script[^>]+src=", page)
    assert page.count('src="data:image/png;base64,') == len(list((ring_run / "figures").glob("*.png")))


def test_page_shows_settings_and_metrics(ring_run):
    page = (ring_run / "report.html").read_text()
    metrics = json.loads((ring_run / "metrics.json").read_text())
    assert "<h1>vaekit run: run</h1>" in page
    assert f"<th>neg_elbo</th><td>{metrics['neg_elbo']:.6g}</td>" in page
    assert "<th>epochs</th><td>5</td>" in page and "<th>hidden</th><td>[32, 32]</td>" in page
    assert "Re-run it with: vaekit train --config config.toml" in page  # the raw config.toml


def test_grid_is_the_decoder_mean_at_each_node(ring_run):
    model = vk.load(ring_run)
    payload = payload_of((ring_run / "report.html").read_text())
    assert (payload["nx"], payload["ny"], payload["dims"], payload["view"]) == (64, 64, [0, 1], "points")
    values = grid(payload)
    for i, j in [(0, 0), (63, 0), (10, 50), (31, 32)]:
        z = node_z(payload, i, j)
        expected = decoded(model, z)
        assert_readout(values[j, i], expected, model, z)
    lo, hi = payload["lo"], payload["hi"]
    assert lo[0] <= -3 and hi[0] >= 3 and payload["axes"][0][0] == pytest.approx(lo[0])


def test_conditional_grids_one_per_class(cvae_run):
    model = vk.load(cvae_run)
    payload = payload_of((cvae_run / "report.html").read_text())
    assert [c["value"] for c in payload["conditions"]] == list(range(8))
    assert payload["condition_kind"] == "onehot"
    z = node_z(payload, 5, 40)
    for k in (0, 7):
        expected = decoded(model, z, k)
        assert_readout(grid(payload, k)[40, 5], expected, model, z, k)
    assert '<select id="condition">' in (cvae_run / "report.html").read_text()


def test_wide_latent_is_a_slice_and_the_page_says_so():
    model = vk.VAE(2, 4, hidden=(8,), seed=0)
    x, y = vk.data.ring(200, seed=0)
    data = runs.RunData(x, None, y, ["x0", "x1"])
    payload = report.explorer_payload(model, data)
    kl = vk.metrics.kl_per_dim(model, x)
    assert payload["dims"] == sorted(np.argsort(-kl)[:2].tolist())  # the two most informative by KL
    assert payload["ranking"]["measure"] == "KL"
    np.testing.assert_allclose(payload["ranking"]["scores"], kl, rtol=1e-6)
    z = node_z(payload, 3, 9)
    assert np.count_nonzero(z) <= 2
    assert_readout(grid(payload)[9, 3], decoded(model, z), model, z)


def test_images_and_continuous_conditions():
    model = vk.VAE(64, 2, hidden=(16,), likelihood=vk.Bernoulli(), condition=vk.Continuous(1, embed=4), seed=0)
    x, _ = vk.data.digits()
    c = np.linspace(0, 1, len(x), dtype=np.float32)[:, None]
    payload = report.explorer_payload(model, runs.RunData(x, c, None, [f"x{i}" for i in range(64)]))
    assert payload["view"] == "image" and payload["image_side"] == 8
    values = [v["value"][0] for v in payload["conditions"]]
    assert len(values) == report.CONTINUOUS_STEPS
    assert values[0] == pytest.approx(0.02, abs=1e-3) and values[-1] == pytest.approx(0.98, abs=1e-3)
    n = payload["nx"]
    assert n * n * 64 * len(values) <= report.GRID_FLOAT_BUDGET and n >= report.GRID_MIN
    z = node_z(payload, 1, 2)
    expected = decoded(model, z, values[4])
    assert_readout(grid(payload, 4)[2, 1], expected, model, z, values[4])


def curve_data(n: int = 240, points: int = 16) -> np.ndarray:
    """Ellipses of varying thickness, flat (n, 2P) in channels-last order."""
    rng = np.random.default_rng(0)
    t = np.linspace(0.0, 2 * np.pi, points, endpoint=False)
    a, b = rng.uniform(0.8, 1.2, (n, 1)), rng.uniform(0.1, 0.4, (n, 1))
    return np.stack([a * np.cos(t), b * np.sin(t)], -1).reshape(n, -1).astype(np.float32)


def test_curve_explorer_and_the_page_name_the_dims_by_kl():
    x = curve_data()
    model = vk.VAE(x_shape=(16, 2), z_dim=4, hidden=(16,), seed=0)
    vk.fit(model, x, epochs=3, seed=0, monitors={})
    last = [m for m in model.encoder.modules() if isinstance(m, torch.nn.Linear)][-1]
    with torch.no_grad():  # z0 collapsed: q(z0|x) = N(0, 1) for every x, KL exactly 0
        for row in (0, 4):
            last.weight[row] = 0.0
            last.bias[row] = 0.0
    data = runs.RunData(x, None, None, [f"x{i}" for i in range(32)])
    payload = report.explorer_payload(model, data)
    assert payload["view"] == "curve" and payload["curve"] == {"points": 16, "channels_last": True}
    kl = vk.metrics.kl_per_dim(model, x)
    assert kl[0] < 1e-6 and 0 not in payload["dims"]
    assert payload["dims"] == sorted(np.argsort(-kl)[:2].tolist())
    page = report.render_html(
        title="t", subtitle="s", config={}, config_text="", metrics={}, figures={}, summary=[], explorer=payload
    )
    a, b = payload["dims"]
    scores = payload["ranking"]["scores"]
    others = ", z".join(str(d) for d in range(4) if d not in (a, b))
    assert (
        f"this plane is the slice through z{a} and z{b} (the two most informative by KL: z{a}: KL {scores[a]:.3g}, "
        f"z{b}: KL {scores[b]:.3g}), with z{others} fixed at 0." in page
    )


def test_explorer_without_data_still_works():
    model = vk.VAE(3, 1, hidden=(8,), seed=0)
    payload = report.explorer_payload(model, None)
    assert payload["ny"] == 1 and payload["view"] == "bars" and "z_points" not in payload
    assert grid(payload).shape == (1, payload["nx"], 3)


def test_page_assets_are_package_data():
    """Every non-Python file of vaekit/report is listed in pyproject's package-data, so wheels carry it."""
    root = Path(__file__).resolve().parents[1]
    listed = runfolder.tomllib.loads((root / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["vaekit.report"]
    assets = sorted(p.name for p in (root / "src" / "vaekit" / "report").iterdir() if p.is_file() and p.suffix != ".py")
    assert assets == sorted(listed) == ["explorer.js", "style.css", "template.html"]
    page = report.render_html(
        title="t",
        subtitle="s",
        config={},
        config_text="",
        metrics={},
        figures={},
        summary=[],
        explorer=report.explorer_payload(vk.VAE(2, hidden=(4,), seed=0), None),
    )
    assert "body{font:15px" in page and "const P = JSON.parse(" in page and page.startswith("<!DOCTYPE html>")


# ---------------------------------------------------------------------------- real browser
def launch(playwright):
    return playwright.chromium.launch(
        executable_path=str(CHROMIUM),
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
        ],
    )


def readout(page) -> tuple[np.ndarray, np.ndarray, object]:
    element = page.locator("#readout")
    return (
        np.array(json.loads(element.get_attribute("data-z")), dtype=np.float32),
        np.array(json.loads(element.get_attribute("data-x")), dtype=np.float32),
        json.loads(element.get_attribute("data-condition")),
    )


def open_report(browser, run: Path):
    """A new page on the run's report.html, and the list its script errors are collected into."""
    page = browser.new_page()
    errors: list[str] = []
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.goto((run / "report.html").as_uri())
    return page, errors


def hover(page, fx: float, fy: float):
    """Move the pointer to fraction (fx, fy) of the latent canvas (from its top left); return the readout."""
    box = page.locator("#latent").bounding_box()
    page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
    return readout(page)


# CI installs chromium (scripts/setup.sh), so there a missing browser is a failure, not a skip.
needs_browser = pytest.mark.skipif(
    not CHROMIUM.exists() and not os.environ.get("CI"), reason="Debian chromium (/usr/bin/chromium) is not installed"
)


@pytest.mark.browser
@needs_browser
@pytest.mark.parametrize("which", ["ring_run", "cvae_run", "radius_run"])
def test_explorer_in_a_real_browser(which, request):
    sync_api = pytest.importorskip("playwright.sync_api")
    run = request.getfixturevalue(which)
    model = vk.load(run)
    ARTIFACTS.mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page = browser.new_page(viewport={"width": 1100, "height": 1000})
            errors: list[str] = []
            page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
            page.on("pageerror", lambda e: errors.append(str(e)))
            requests: list[str] = []
            page.on("request", lambda r: requests.append(r.url) if not r.url.startswith(("file:", "data:")) else None)
            page.goto((run / "report.html").as_uri())
            page.wait_for_load_state("load")
            box = page.locator("#latent").bounding_box()
            seen = []
            for fx, fy in [(0.3, 0.7), (0.75, 0.25)]:
                page.mouse.move(box["x"] + fx * box["width"], box["y"] + fy * box["height"])
                z, x, condition = readout(page)
                expected = decoded(model, z, condition)
                assert_readout(x, expected, model, z, condition)
                text = page.locator("#readout").text_content()
                assert f"z = ({z[0]:.4f}, {z[1]:.4f})" in text and f"x = ({x[0]:.4f}, {x[1]:.4f})" in text
                seen.append((z, x))
            assert not np.allclose(seen[0][0], seen[1][0]) and not np.allclose(seen[0][1], seen[1][1])
            # arrow keys step one grid node
            axis = payload_of((run / "report.html").read_text())["axes"][0]
            page.locator("#latent").focus()
            page.keyboard.press("ArrowRight")
            z_key, x_key, c_key = readout(page)
            assert z_key[0] == pytest.approx(seen[1][0][0] + axis[1] - axis[0]) and z_key[1] == seen[1][0][1]
            expected = decoded(model, z_key, c_key)
            assert_readout(x_key, expected, model, z_key, c_key)
            # the first point is left-bottom of the second in the latent plane
            assert seen[0][0][0] < seen[1][0][0] and seen[0][0][1] < seen[1][0][1]
            if model.condition is not None:
                z_before, x_before, c_before = readout(page)
                if model.condition.kind == "onehot":
                    page.select_option("#condition", "6")
                else:
                    page.locator("#condition").fill("8")  # the slider's last step: the largest radius
                z, x, condition = readout(page)
                assert condition != c_before and np.array_equal(z, z_before) and not np.allclose(x, x_before)
                if model.condition.kind == "onehot":
                    assert condition == 6
                else:
                    payload = payload_of(page.content())
                    assert condition == payload["conditions"][8]["value"] and condition[0] > c_before[0]
                expected = decoded(model, z, condition)
                assert_readout(x, expected, model, z, condition)
            page.screenshot(path=str(ARTIFACTS / f"report-{which}.png"), full_page=True)
            assert errors == []
            assert requests == []  # nothing fetched from the network
        finally:
            browser.close()


@pytest.mark.browser
@needs_browser
def test_image_explorer_in_a_real_browser(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    run = make_run(tmp_path, "--data", "digits", "--z-dim", "3")
    model = vk.load(run)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = open_report(browser, run)
            assert "slice through" in page.text_content("body")
            z, x, _ = hover(page, 0.2, 0.4)
            assert z.shape == (3,) and x.shape == (64,)
            assert_readout(x, decoded(model, z), model, z)
            # the 8x8 image is drawn: the output canvas is not blank
            drawn = page.evaluate(
                "() => { const c = document.getElementById('output');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] > 0; return n; }"
            )
            assert drawn > 100 * 100
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-digits.png"), full_page=False)
            assert errors == []
        finally:
            browser.close()


@pytest.mark.browser
@needs_browser
def test_curve_explorer_draws_the_decoded_curve_as_a_polyline(tmp_path):
    sync_api = pytest.importorskip("playwright.sync_api")
    np.save(tmp_path / "curves.npy", curve_data())
    run = make_run(tmp_path, "--data", str(tmp_path / "curves.npy"), "--x-shape", "16,2", "--z-dim", "3")
    model = vk.load(run)
    with sync_api.sync_playwright() as p:
        browser = launch(p)
        try:
            page, errors = open_report(browser, run)
            z, x, _ = hover(page, 0.35, 0.6)
            assert_readout(x, decoded(model, z), model, z)
            # the polyline's vertices are the 16 decoded (x, y) points, on one scale in x and y (y up)
            vertices = np.array(json.loads(page.locator("#output").get_attribute("data-polyline")))
            curve = x.reshape(16, 2).astype(np.float64)
            assert vertices.shape == (16, 2)
            scale = np.polyfit(curve[:, 0], vertices[:, 0], 1)[0]
            np.testing.assert_allclose(vertices[:, 0] - vertices[0, 0], scale * (curve[:, 0] - curve[0, 0]), atol=1e-3)
            np.testing.assert_allclose(vertices[:, 1] - vertices[0, 1], -scale * (curve[:, 1] - curve[0, 1]), atol=1e-3)
            red = page.evaluate(
                "() => { const c = document.getElementById('output');"
                " const d = c.getContext('2d').getImageData(0, 0, c.width, c.height).data;"
                " let n = 0; for (let i = 0; i < d.length; i += 4) n += d[i] > 150 && d[i + 1] < 80 && d[i + 3] > 0; return n; }"
            )
            assert red > 100  # the red polyline is on the canvas
            ARTIFACTS.mkdir(exist_ok=True)
            page.screenshot(path=str(ARTIFACTS / "report-curves.png"), full_page=False)
            assert errors == []
        finally:
            browser.close()
