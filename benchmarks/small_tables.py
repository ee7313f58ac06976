"""Stopping rules for tables too small for a validation split: could any number of epochs beat PPCA?

Below 48 training rows the defaults of a user's file train for 400 epochs without a validation
split (README "vaekit vs PCA"). This benchmark asks whether a choice of the number of epochs
would do better, and whether cross-validation can find it. For each table (a CSV file of
numeric columns with a header row) and latent size, with the defaults of ``vaekit train --data
FILE.csv --z-dim Z --test-fraction 0.3`` (split seed 0):

- trains on all training rows for 400 epochs and records the held-out ``iwae_nll`` (k = 100)
  after every epoch, so every stopping epoch can be scored afterwards;
- runs 4-fold cross-validation on the training rows: 4 models, each trained on 3 folds with the
  4th as ``val``, record its ``val_loss`` (the negative ELBO per row) after every epoch;
- prints, next to PPCA's held-out NLL: the default (400 epochs), the epoch of the lowest mean
  validation loss over the folds, the latest epoch within one standard error of that lowest
  mean (the "one-SE rule", which prefers longer training), and the best epoch in hindsight
  (chosen on the held-out rows themselves: no rule can do better by stopping alone).

Nothing here changes the defaults; it measures them. A (table, z) pair takes 2 to 4 minutes on one core.

The model rules: the same for a linear VAE (``hidden = []``), and the one of the two with the
lower 4-fold cross-validated IWAE NLL (``vk.crossval.cross_validated_nll``, each fold trained
with the run's settings; the linear model wins only with a lower, finite NLL).

Usage: PYTHONPATH=src python benchmarks/small_tables.py FILE.csv [FILE.csv ...] [--z 2,5] [--seed 0]
       [--jsonl OUT.jsonl]   (z = 5 runs on tables of 8 or more columns)
"""

from __future__ import annotations

import argparse
import json
import warnings
from pathlib import Path

import numpy as np
import torch

from vaekit import crossval, runs
from vaekit.baselines import baseline_metrics
from vaekit.metrics import iwae_log_likelihood
from vaekit.trainer import Callback, fit

FOLDS = 4
# The default network, and a linear VAE (no hidden layers: with a learned variance per column, factor analysis).
MODELS = {"network": {}, "linear": {"hidden": []}}
WIDE = 8  # a latent size above 2 only on tables of at least this many columns


class HeldOutCurve(Callback):
    """The held-out IWAE NLL (nats per row, k = 100) after every epoch."""

    def __init__(self, x: np.ndarray) -> None:
        self.x = torch.as_tensor(x, dtype=torch.float32)
        self.nll: list[float] = []

    def on_epoch_end(self, epoch, record, model):
        model.eval()
        with torch.no_grad():
            self.nll.append(float(-iwae_log_likelihood(model, self.x, k=100, seed=0).mean()))
        model.train()


def prepared(
    path: Path,
    z: int,
    seed: int,
    model: dict,
    split_seed: int = 0,
    log_columns: str = "auto",
    df: str = "learned",
    exclude: tuple[str, ...] = (),
):
    """(config, training data, held-out data) as ``vaekit train`` resolves them for this file.

    ``log_columns``: "auto" (today's default for a file) or "none" (``[data] log_columns = []``,
    the defaults before log columns, with which the README's older small-table tables were measured).
    ``df``: "learned" (Student's t, today's default for a file) or "none" (the Gaussian, the
    defaults before it, with which the README's small-table tables before "Student's t" were
    measured); a ``df`` in ``model`` wins. ``exclude``: columns left out (``[data] exclude``).
    """
    d = {"path": str(path), "test_fraction": 0.3, "split_seed": split_seed}
    if exclude:
        d["exclude"] = list(exclude)
    if log_columns == "none":
        d["log_columns"] = []
    settings = {"z_dim": z, "df": df, **model}
    config = runs.validate_config({"data": d, "model": settings, "training": {"seed": seed}})
    data, test = runs.load_data(config), runs.load_data(config, test=True)
    runs.apply_auto_log_columns(config, data, test)  # as train() does: the held-out rows must be scorable
    runs.apply_auto_validation(config, len(data.x), streamed=False)
    runs.apply_batches_per_epoch(config, len(data.x))
    if config["training"]["val_fraction"]:
        raise SystemExit(f"{path}: {len(data.x)} training rows get a validation split already; this is for smaller tables")
    return config, data, test


def measure(path: Path, z: int, seed: int, log_columns: str = "auto", df: str = "learned") -> dict:
    """Held-out NLL after every epoch of both full runs, the network's fold curves, both cross-validated NLLs."""
    result: dict = {"table": path.stem, "z": z, "seed": seed}
    setups = {name: prepared(path, z, seed, settings, log_columns=log_columns, df=df) for name, settings in MODELS.items()}
    for name, (config, data, test) in setups.items():
        curve = HeldOutCurve(test.x)
        fit(runs.build_model(config, data), data.x, None, monitors={}, callbacks=[curve], **runs.fit_kwargs(config))
        result[name] = {"held_out": curve.nll}
    config, data, test = setups["network"]  # the folds and the scores below start from the network's settings
    # The stopping rules: the network's validation curve on each fold (fit with val draws its
    # noise from the training stream, so these fold models differ from the choice's below).
    # Folds in permutation order, as the README's numbers were measured (crossval.fold_rows sorts them).
    order = np.random.default_rng(seed).permutation(len(data.x))
    for fold in np.array_split(order, FOLDS):
        kwargs = runs.fit_kwargs(config) | {"val": data.x[fold]}
        history = fit(runs.build_model(config, data), data.x[np.setdiff1d(order, fold)], None, monitors={}, **kwargs)
        result["network"].setdefault("folds", []).append(history.val_loss)
    # The model rule: both models scored by cross-validation on the training rows.
    scores = model_scores(config, data)
    result |= {"cv_nll": scores, "n": len(data.x), "ppca": baseline_metrics(data.x, test.x, z)["ppca_nll"]}
    return result


def model_scores(config: dict, data) -> dict[str, float]:
    """Model name -> its 4-fold cross-validated IWAE NLL on the training rows (nats per row)."""
    scores = {}
    for name, settings in MODELS.items():
        chosen = {**config, "model": {**config["model"], **settings}}
        scores[name] = crossval.cross_validated_nll(
            lambda chosen=chosen: runs.build_model(chosen, data),
            data.x,
            data.condition,
            folds=FOLDS,
            k=config["evaluation"]["k"],
            **runs.fit_kwargs(config),
        )
    return scores


def rules(result: dict) -> dict[str, tuple[int, float]]:
    """Stopping rule for the network -> (epoch, held-out NLL at that epoch); epochs count from 1."""
    folds, held_out = np.array(result["network"]["folds"]), np.array(result["network"]["held_out"])
    mean, se = folds.mean(0), folds.std(0, ddof=1) / np.sqrt(len(folds))
    lowest = int(np.argmin(mean))
    one_se = int(np.flatnonzero(mean <= mean[lowest] + se[lowest]).max())
    best = int(np.argmin(held_out))
    return {
        "400 epochs (default)": (len(held_out), held_out[-1]),
        f"{FOLDS}-fold CV": (lowest + 1, held_out[lowest]),
        "CV, one-SE rule": (one_se + 1, held_out[one_se]),
        "best in hindsight": (best + 1, held_out[best]),
    }


def models(result: dict) -> dict[str, tuple[str, float]]:
    """Model rule -> (the model it takes, its held-out NLL after 400 epochs)."""
    held_out = {name: result[name]["held_out"][-1] for name in MODELS}
    linear, network = result["cv_nll"]["linear"], result["cv_nll"]["network"]
    chosen = "linear" if np.isfinite(linear) and (not np.isfinite(network) or linear < network) else "network"
    return {
        "network (default)": ("network", held_out["network"]),
        "linear": ("linear", held_out["linear"]),
        f"{FOLDS}-fold CV choice": (chosen, held_out[chosen]),
    }


def table(results: list[dict], choose, title: str) -> None:
    """A markdown table (bold: beats PPCA) of ``choose(result)`` and, per rule, its wins and its change from the first."""
    names = list(choose(results[0]))
    print(f"\n{title}\n\n| table | training rows | z | PPCA | " + " | ".join(names) + " |")
    print("| --- " * (4 + len(names)) + "|")
    changes: dict[str, list[tuple[bool, float]]] = {name: [] for name in names}
    for r in sorted(results, key=lambda r: (-r["n"], r["table"].lower(), r["z"])):
        chosen = choose(r)
        cells = []
        for name, (what, nll) in chosen.items():
            changes[name].append((nll < r["ppca"], nll - chosen[names[0]][1]))
            text = f"{nll:.4g}"
            cells.append((f"**{text}**" if nll < r["ppca"] else text) + ("" if name == names[0] else f" ({what})"))
        print(f"| {r['table']} | {r['n']} | {r['z']} | {r['ppca']:.4g} | " + " | ".join(cells) + " |")
    print()
    for name, values in changes.items():
        delta = np.array([d for _, d in values])
        print(
            f"- {name}: beats PPCA on {sum(w for w, _ in values)} of {len(values)}; against {names[0]} better on "
            f"{(delta < 0).sum()}, worse on {(delta > 0).sum()}, median change {np.median(delta):+.3f} nats"
        )


def report(results: list[dict]) -> None:
    """Both tables: stopping rules for the network (epoch in brackets), then the model rules."""
    table(results, rules, "Held-out NLL of the network by stopping rule (its epoch):")
    table(results, models, "Held-out NLL by model (the model taken):")


def pairs(files: list[Path], latent_sizes: str) -> list[tuple[Path, int]]:
    """(table, z) for each file and each of the comma-separated ``latent_sizes`` it has room for.

    z must be below the table's column count, and above 2 only on tables of WIDE or more columns.
    """
    result = []
    for path in files:
        columns = len(path.read_text().splitlines()[0].split(","))
        result += [(path, z) for z in (int(v) for v in latent_sizes.split(",")) if z < columns and (z <= 2 or columns >= WIDE)]
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("files", nargs="*", type=Path, help="CSV tables")
    parser.add_argument("--z", default="2,5", help="latent sizes")
    parser.add_argument("--seed", type=int, default=0, help="training seed")
    parser.add_argument("--log-columns", choices=("auto", "none"), default="auto", help="none: as measured in the README")
    parser.add_argument(
        "--df", choices=("learned", "none"), default="learned", help="none: the Gaussian, as measured in the README"
    )
    parser.add_argument("--jsonl", type=Path, help="append every result to this file; with no FILE, report it")
    args = parser.parse_args()
    warnings.filterwarnings("ignore")  # the collapse and baseline warnings of tiny tables: the table says it
    torch.set_num_threads(1)
    results = []
    for path, z in pairs(args.files, args.z):
        results.append(measure(path, z, args.seed, args.log_columns, args.df))
        if args.jsonl:
            with open(args.jsonl, "a") as handle:
                handle.write(json.dumps(results[-1]) + "\n")
    if not args.files and args.jsonl:
        results = [json.loads(line) for line in args.jsonl.read_text().splitlines()]
    report(results)


if __name__ == "__main__":
    main()
