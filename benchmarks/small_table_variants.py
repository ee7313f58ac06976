"""Variants of the defaults on tables too small for a validation split: capacity and the learned variance.

Below 48 training rows ``vaekit train`` has no validation split, so nothing stops a model from
fitting noise (README "vaekit vs PCA"). This benchmark trains the defaults of ``vaekit train
--data FILE.csv --z-dim Z --test-fraction 0.3`` (split seed 0) with one change at a time and
scores the held-out ``iwae_nll`` (k = 100) after the full run, next to PPCA's:

- ``default``: nothing changed;
- ``w16``, ``w32``, ``w64``: hidden layers of 16, 32 or 64 units instead of 128 (capacity);
- ``mv0.01``: a floor of 0.01 on the learned variance (``min_variance``, standardised units);
- ``pcafloor``: a floor per column at the variance that PCA with Z components leaves in that
  column (standardised units), so no column is claimed more precise than a linear model finds it;
- ``shared``: one learned variance for all columns (isotropic noise in standardised units; PPCA's
  is isotropic in the raw units);
- ``fast``: the learned variance moves 10 times faster. Adam moves each parameter by typically
  about ``lr`` per step whatever the size of its gradient, so a variance parameter that is one
  number per column (not a network output) falls from 1 at the lowest to about
  ``softplus(0.5413 - lr * steps)``; here
  its softplus argument is 10 times a parameter (a torch parametrisation), so it moves 10 times
  as far per step;
- ``fast+pcafloor``: both;
- ``wd1e-3``, ``wd1e-2``: Adam's L2 weight decay of 1e-3 or 1e-2 on every parameter (``[training]
  weight_decay``; it also pulls the learned variance's softplus argument towards 0, a variance of 0.69);
- ``pcastart``: the encoder and decoder start at PCA and learn a residual (``encoder = "pca"``, the
  airfoils' trunks);
- ``pcavar``: the learned variance starts at the variance PCA with Z components leaves in each
  standardised column (``pcafloor``'s values, at least twice the floor) instead of 1;
- ``pcastart+pcavar``: both, so the untrained model is close to PPCA (PCA's directions, the
  residual variance per column);
- ``studentt``: Student's t in place of the Gaussian, one learned df per column from 10
  (``[model] df = "learned"``): a held-out row far outside the training range costs a multiple
  of the log of its distance, not its square. With the default ``--df learned`` it is the same
  run as ``default``, so ``--variants`` leaves it out unless named (use it with ``--df none``);
- ``mv1e-6``: a floor of 1e-6 instead of 1e-4 on the learned variance (does the floor stop the
  model on tables whose columns hold near-exact linear relations?);
- ``fa``: no training: PCA-started trunks (``encoder = "pca"``) and a Gaussian set to factor
  analysis of the training rows in the networks' units (scikit-learn's ``FactorAnalysis``, Z
  factors, rotated so that the posterior covariance is diagonal): the encoder gives the exact
  posterior, so the untrained model's density is factor analysis's (the noise variance at least
  twice the floor). The linear-Gaussian model with a variance per column, which ``hidden = []``
  is too, fitted by EM instead of by 400 epochs of Adam;
- ``fastart``: the same start (with Student's t, scale² at the noise variance), then the
  defaults' training;
- ``facv``: ``fa`` or the defaults' network, whichever has the lower 4-fold cross-validated
  NLL on the training rows (``vk.crossval``, folds drawn with the training seed), trained on all of
  them (``cv_network``, ``cv_fa`` and ``chosen`` in the result).

Each result also holds the per-row held-out NLLs of the model and of PPCA (``nll_rows``,
``ppca_rows``: the gap's paired standard error), and ``--split-seeds`` measures other 30% splits
(``[data] split_seed``). ``--log-columns none`` gives the defaults before log columns
(``[data] log_columns = []``), with which the README's older small-table tables were measured
(split seed 0 reproduces them bit for bit); the default ``auto`` is today's. Likewise ``--df none``
gives the Gaussian decoder of the defaults before Student's t (``[model] df = "none"``), with which
the README's small-table tables before its "Student's t" table were measured; the default
``learned`` is today's (``studentt`` then changes nothing).

Nothing here changes the defaults; it measures them. A (table, z, variant) takes 5 to 15 s on one core.

Usage: PYTHONPATH=src python benchmarks/small_table_variants.py FILE.csv [FILE.csv ...] [--z 2,5] [--seeds 0]
       [--variants default,w32] [--split-seeds 0,1,2,3,4] [--df learned|none] --jsonl OUT.jsonl   (z = 5 runs on tables of 8 or
       more columns; with no FILE, reports OUT.jsonl: per variant, its wins over PPCA, those beyond the noise
       of the gap (Student's t 95% quantile of its paired standard error, as the PPCA warning weighs
       it), and its change from the default)
"""

from __future__ import annotations

import argparse
import json
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import torch
from small_tables import pairs, prepared
from torch.nn.utils import parametrize

from vaekit import runs
from vaekit.baselines import PCA, baseline_metrics
from vaekit.crossval import cross_validated_nll, fold_rows
from vaekit.diagnostics import t_quantile_975
from vaekit.metrics import iwae_log_likelihood
from vaekit.nn import PCAResidual
from vaekit.trainer import fit

FASTER = 10  # the "fast" variance's pace, in multiples of the default's
# Variant -> [model] settings it changes (the parametrisations and floors are applied in `build`).
SETTINGS = {
    "default": {},
    "w16": {"hidden": [16, 16]},
    "w32": {"hidden": [32, 32]},
    "w64": {"hidden": [64, 64]},
    "mv0.01": {"min_variance": 0.01},
    "pcafloor": {},
    "shared": {},
    "fast": {},
    "fast+pcafloor": {},
    "wd1e-3": {},
    "wd1e-2": {},
    "pcastart": {"encoder": "pca"},
    "pcavar": {},
    "pcastart+pcavar": {"encoder": "pca"},
    "studentt": {"df": "learned"},
    "mv1e-6": {"min_variance": 1e-6},
    "fa": {"encoder": "pca", "df": "none"},
    "fastart": {"encoder": "pca"},
    "facv": {},
}
UNTRAINED = {"fa"}  # variants whose start is the model: no training
FOLDS = 4  # facv's cross-validation
# Variant -> [training] settings it changes.
TRAINING = {"wd1e-3": {"weight_decay": 1e-3}, "wd1e-2": {"weight_decay": 1e-2}}


class Scaled(torch.nn.Module):
    """raw = FASTER * parameter: Adam's steps of about lr on the parameter move raw FASTER times as far."""

    def forward(self, parameter: torch.Tensor) -> torch.Tensor:
        return FASTER * parameter

    def right_inverse(self, raw: torch.Tensor) -> torch.Tensor:
        return raw / FASTER


class Shared(torch.nn.Module):
    """raw (D,) = one parameter (1,) repeated: one variance for every column."""

    def __init__(self, width: int) -> None:
        super().__init__()
        self.width = width

    def forward(self, parameter: torch.Tensor) -> torch.Tensor:
        return parameter.expand(self.width)

    def right_inverse(self, raw: torch.Tensor) -> torch.Tensor:
        return raw[:1].clone()


def pca_residual_variance(x: np.ndarray, z: int) -> np.ndarray:
    """(D,) the variance per standardised column that PCA with ``z`` components does not explain."""
    std = x.std(0)
    xs = (x - x.mean(0)) / np.where(std > 1e-8, std, 1.0)  # a constant column stays unscaled, as the model leaves it
    return ((xs - PCA(z).fit(xs).reconstruct(xs)) ** 2).mean(0)


def factor_analysis_start(model: torch.nn.Module, x: np.ndarray, z: int) -> None:
    """Set a PCA-started model's linear maps and learned variance to factor analysis of ``x`` (N, D).

    Fitted in the networks' units (log columns logged, standardised) with scikit-learn's EM: the
    model's standardisation is set from ``x`` first, as ``fit`` sets it from the same rows (so
    ``fit`` keeps it, and the variance floor applies in standardised units, as in training). The
    loadings W (D, Z) are rotated so that W^T Psi^-1 W is diagonal (d), which makes the posterior
    of z given x a diagonal Gaussian: mean (1 + d)^-1 W^T Psi^-1 (x - mu), variance (1 + d)^-1.
    The PCA start (``initialise_from_data``) is overwritten and stays marked done, so ``fit``
    keeps this one.
    """
    from sklearn.decomposition import FactorAnalysis

    rows = model.prepare_x(x)
    model.set_scaling(rows)  # as fit() will: the moments of these rows, then the PCA start
    xs = model.network_input(rows).double().numpy()  # (N, D) standardised
    fa = FactorAnalysis(z, random_state=0).fit(xs)
    (head,) = [m for m in model.modules() if hasattr(m, "raw_variance")]
    floor = float(head.min_variance)
    psi = np.maximum(fa.noise_variance_, 2 * floor)  # (D,) as the learned variance can hold it
    loadings = fa.components_.T  # (D, Z)
    d, rotation = np.linalg.eigh(loadings.T @ (loadings / psi[:, None]))
    w = loadings @ rotation  # (D, Z)
    posterior_var = 1.0 / (1.0 + d)  # (Z,)
    to_mean = posterior_var[:, None] * w.T / psi[None, :]  # (Z, D)
    trunks = [m for m in model.modules() if isinstance(m, PCAResidual)]
    if sorted(m.role for m in trunks) != ["decoder", "encoder"]:
        raise SystemExit(f"factor_analysis_start needs one PCA-started encoder and decoder; got {[m.role for m in trunks]}")
    as_tensor = partial(torch.as_tensor, dtype=torch.float32)
    with torch.no_grad():
        for trunk in trunks:
            weight, bias = trunk.linear.weight, trunk.linear.bias
            if trunk.role == "encoder":  # outputs: Z means, then Z log-variances
                weight[: 2 * z], bias[: 2 * z] = 0.0, 0.0
                weight[:z], bias[:z] = as_tensor(to_mean), as_tensor(-to_mean @ fa.mean_)
                bias[z : 2 * z] = as_tensor(np.log(posterior_var))
            else:
                weight.zero_()
                bias.zero_()
                weight[: len(psi), :z], bias[: len(psi)] = as_tensor(w), as_tensor(fa.mean_)
            trunk.initialised.fill_(True)
        excess = as_tensor(psi - floor)  # variance = floor + softplus(raw)
        head.raw_variance.copy_(excess + torch.log(-torch.expm1(-excess)))


def build(variant: str, config: dict, data, z: int, x: np.ndarray | None = None) -> torch.nn.Module:
    """The defaults' model for ``data`` with ``variant``'s change, if any (``fa`` starts: from ``x``, else ``data.x``)."""
    model = runs.build_model(config, data)
    if variant in ("fa", "fastart"):
        factor_analysis_start(model, data.x if x is None else x, z)
        return model
    (head,) = [m for m in model.modules() if hasattr(m, "raw_variance")]  # the learned-variance likelihood head
    logged = model.log_transform(torch.as_tensor(data.x, dtype=torch.float32)).numpy().astype(np.float64)  # networks' units
    if "pcafloor" in variant:
        floor = np.maximum(pca_residual_variance(logged, z), head.min_variance)
        head.min_variance = torch.as_tensor(floor, dtype=torch.float32)
    if "pcavar" in variant:
        start = np.maximum(pca_residual_variance(logged, z), 2 * float(head.min_variance))
        excess = torch.as_tensor(start - float(head.min_variance), dtype=torch.float32)
        with torch.no_grad():  # variance = min_variance + softplus(raw): raw = softplus^-1(start - min_variance)
            head.raw_variance.copy_(excess + torch.log(-torch.expm1(-excess)))
    if variant in ("fast", "fast+pcafloor"):
        parametrize.register_parametrization(head, "raw_variance", Scaled())
    if variant == "shared":
        parametrize.register_parametrization(head, "raw_variance", Shared(head.raw_variance.shape[0]))
    return model


def measure(
    path: Path,
    z: int,
    seed: int,
    variant: str,
    split_seed: int = 0,
    log_columns: str = "auto",
    df: str = "learned",
    exclude: tuple[str, ...] = (),
) -> dict:
    """Held-out NLL of the defaults with ``variant`` after the full run, and PPCA's, also per held-out row.

    ``exclude``: columns left out of the data (``[data] exclude``), recorded in the result when given.
    """
    start = time.perf_counter()
    config, data, test = prepared(path, z, seed, SETTINGS[variant], split_seed, log_columns, df, exclude)
    config["training"].update(TRAINING.get(variant, {}))
    extra: dict = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the run's own warnings (PPCA, collapse) are the measurement here
        if variant == "facv":
            fa_config = prepared(path, z, seed, SETTINGS["fa"], split_seed, log_columns, df, exclude)[0]
            extra = cross_validated_choice(config, fa_config, data, z, seed)
            if extra["chosen"] == "fa":
                config = fa_config
        chosen = extra.get("chosen", variant)
        model = build(chosen, config, data, z)
        if chosen not in UNTRAINED:
            fit(model, data.x, None, monitors={}, **runs.fit_kwargs(config))
    model.eval()
    with torch.no_grad():
        x = torch.as_tensor(test.x, dtype=torch.float32)
        log_p = iwae_log_likelihood(model, x, k=config["evaluation"]["k"], seed=0)  # (M,)
    nll = float(-log_p.mean())
    base = baseline_metrics(data.x, test.x, z, per_row=True)
    return {
        "variant": variant,
        "seed": seed,
        "split_seed": split_seed,
        "nll_rows": (-np.asarray(log_p, dtype=np.float64)).tolist(),
        "ppca_rows": (-base["ppca_log_prob"]).tolist(),
        "table": path.stem,
        "z": z,
        "n": len(data.x),
        "nll": nll,
        "ppca": base["ppca_nll"],
        "seconds": time.perf_counter() - start,
        **extra,
        **({"exclude": list(exclude)} if exclude else {}),
    }


def cross_validated_choice(config: dict, fa_config: dict, data, z: int, seed: int) -> dict:
    """``facv``: 4-fold cross-validated NLL on the training rows of the defaults' network and of ``fa``, and the lower."""
    k = config["evaluation"]["k"]
    kwargs = {key: value for key, value in runs.fit_kwargs(config).items() if key not in ("seed", "val")}
    network = cross_validated_nll(lambda: runs.build_model(config, data), data.x, folds=FOLDS, seed=seed, k=k, **kwargs)
    total = 0.0
    for rows in fold_rows(len(data.x), FOLDS, seed):
        model = build("fa", fa_config, data, z, x=data.x[np.setdiff1d(np.arange(len(data.x)), rows)])
        model.eval()
        with torch.no_grad():
            total -= float(iwae_log_likelihood(model, torch.as_tensor(data.x[rows]), k=k, seed=seed).sum())
    fa = total / len(data.x)
    return {"cv_network": network, "cv_fa": fa, "chosen": "fa" if fa < network else "default"}


def report(results: list[dict]) -> None:
    """Per variant: its wins over PPCA per seed, and against the default of the same seed, pair by pair."""

    def split(r: dict) -> int:
        return r.get("split_seed", 0)  # measured before --split-seeds: split seed 0

    keys = [(r["variant"], r["seed"], split(r), r["table"], r["z"]) for r in results]
    repeated = sorted({key for key in keys if keys.count(key) > 1})
    if repeated:  # --jsonl appends: a command run twice would count its pairs twice
        raise SystemExit(f"{len(repeated)} (variant, seed, split seed, table, z) measured more than once, e.g. {repeated[0]}")

    default = {(r["table"], r["z"], r["seed"], split(r)): r["nll"] for r in results if r["variant"] == "default"}
    head = "| variant | seed | split seed | pairs | beats PPCA | ahead / behind beyond noise | better than the default | worse |"
    print(head + " median change (nats) |")
    print("| --- " * 9 + "|")
    for variant in SETTINGS:
        runs_of = [r for r in results if r["variant"] == variant]
        for seed, split_seed in sorted({(r["seed"], split(r)) for r in runs_of}):
            rows = [r for r in runs_of if r["seed"] == seed and split(r) == split_seed]
            wins = sum(r["nll"] < r["ppca"] for r in rows)
            sure = "–"
            if all("nll_rows" in r for r in rows):  # the gap beyond t's 95% quantile of its paired SE, as the warning
                gaps = [np.subtract(r["nll_rows"], r["ppca_rows"]) for r in rows]
                t = [g.mean() / (g.std(ddof=1) / np.sqrt(len(g))) / t_quantile_975(len(g) - 1) for g in gaps]
                sure = f"{sum(v < -1 for v in t)} / {sum(v > 1 for v in t)}"
            paired = [r["nll"] - default[key] for r in rows if (key := (r["table"], r["z"], seed, split_seed)) in default]
            delta = np.array(paired)
            change = (
                ["–"] * 3
                if variant == "default" or not paired
                else [str((delta < 0).sum()), str((delta > 0).sum()), f"{np.median(delta):+.3f}"]
            )
            print(f"| {variant} | {seed} | {split_seed} | {len(rows)} | {wins} | {sure} | " + " | ".join(change) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("files", nargs="*", type=Path, help="CSV tables")
    parser.add_argument("--z", default="2,5", help="latent sizes")
    parser.add_argument("--seeds", default="0", help="training seeds")
    parser.add_argument("--split-seeds", default="0", help="seeds of the 30%% held-out split")
    parser.add_argument("--log-columns", choices=("auto", "none"), default="auto", help="none: the defaults before log columns")
    parser.add_argument("--df", choices=("learned", "none"), default="learned", help="none: the Gaussian, the defaults before it")
    parser.add_argument("--exclude", default="", help="columns to leave out of every FILE (comma separated)")
    later = ("studentt", "mv1e-6", "fa", "fastart", "facv")  # studentt: default's run under --df learned; the rest: named
    every = ",".join(name for name in SETTINGS if name not in later)
    parser.add_argument("--variants", default=every, help=f"any of {', '.join(SETTINGS)}")
    parser.add_argument("--jsonl", type=Path, required=True, help="append every result here; with no FILE, report it")
    args = parser.parse_args()
    torch.set_num_threads(1)
    if not args.files:
        report([json.loads(line) for line in args.jsonl.read_text().splitlines() if line.strip()])
        return
    variants = args.variants.split(",")
    unknown = sorted(set(variants) - set(SETTINGS))
    if unknown:
        raise SystemExit(f"--variants: unknown {unknown}; known: {', '.join(SETTINGS)}")
    for variant in variants:
        for seed in (int(s) for s in args.seeds.split(",")):
            splits = [int(s) for s in args.split_seeds.split(",")]
            for split_seed, (path, z) in [(s, pair) for s in splits for pair in pairs(args.files, args.z)]:
                exclude = tuple(name for name in args.exclude.split(",") if name)
                result = measure(path, z, seed, variant, split_seed, args.log_columns, args.df, exclude)
                print(json.dumps(result), flush=True)
                with args.jsonl.open("a") as out:
                    out.write(json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
