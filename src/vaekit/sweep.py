"""``sweep``: train a grid of small VAEs at once, one model per hyperparameter combination.

The models of a sweep share their architecture, so their weights stack into (M, out, in)
tensors and one batched pass trains all of them. Three engines, chosen in this order:

1. the hand-written ELBO step of :mod:`vaekit.fastpath` with batched matrix products, when every
   model's engine has proved itself against autograd (as ``fit`` checks): on a 2-core CPU the
   lecture's 16 networks train in about the time of their arithmetic;
2. ``torch.func``: ``vmap`` over ``grad`` of the objective itself (:mod:`vaekit.vmapped`), for
   any model of the contract with a diagonal Gaussian posterior, when all models share one
   objective (no swept beta);
3. otherwise one model after another with :func:`vaekit.fit` (logged at INFO, with the reason).

Each model draws its random numbers from its own generator seeded like ``fit(seed=...)`` does,
in the same order (shuffle, reparameterisation noise, diversity samples), so a swept model
equals, to float rounding, the same model trained alone with :func:`vaekit.fit`.
"""

from __future__ import annotations

import itertools
import logging
import math
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import torch

from vaekit import fastpath, vmapped
from vaekit.distributions import Gaussian
from vaekit.errors import InputError, InputTypeError, describe
from vaekit.formatting import format_value
from vaekit.history import History
from vaekit.models.base import LatentVariableModel, not_applicable
from vaekit.monitors import Diversity
from vaekit.objectives import ELBO, default_objective
from vaekit.trainer import fit, proven_accelerator
from vaekit.validate import positive_float, positive_int

logger = logging.getLogger(__name__)

SWEEPABLE = ("variance", "beta", "seed", "lr")


@dataclass
class SweepResult:
    """Outcome of :func:`sweep`.

    Attributes
    ----------
    table : list of dict
        One row per model: the swept hyperparameters, then the final epoch's loss,
        reconstruction, reconstruction_nll, kl, neg_elbo and diversity.
    models : list of VAE
        The trained models, in table order; usable (and savable) like any other.
    histories : list of History
        Per-epoch records, as :func:`vaekit.fit` returns them.
    seconds : float
        Wall time of the whole sweep.
    vectorised : bool
        True when the models were trained together in one batched pass.
    chosen : dict of str to str
        Settings chosen from the data's rows (:func:`vaekit.runs.sweep`: log columns, batch
        size): key -> why, as ``vaekit sweep`` prints them (the folder's config.toml records
        the settings, not why); empty for :func:`sweep`.

    """

    table: list[dict[str, Any]]
    models: list[Any]
    histories: list[History]
    seconds: float = 0.0
    vectorised: bool = True
    over: dict[str, list[Any]] = field(default_factory=dict)
    chosen: dict[str, str] = field(default_factory=dict)

    def format_table(self) -> str:
        """The table as aligned text, one line per model."""
        if not self.table:
            return ""
        keys = list(self.table[0])
        cells = [[format_value(row[k], 4, nested=False) for k in keys] for row in self.table]
        widths = [max(len(k), *(len(c[i]) for c in cells)) for i, k in enumerate(keys)]
        lines = ["  ".join(k.rjust(w) for k, w in zip(keys, widths))]
        lines += ["  ".join(c.rjust(w) for c, w in zip(row, widths)) for row in cells]
        return "\n".join(lines)

    def figure(self, x: Any = None, *, condition: Any = None, n: int = 2000, seed: int = 0, columns: int | None = None):
        """Decoded prior samples of every model side by side (matplotlib Figure).

        Parameters
        ----------
        x : array (N, 2), optional
            Training data drawn in grey behind each model's samples.
        condition : optional
            Condition the samples of a conditional model are drawn under (a single label or
            value is used for every sample); required for conditional models.
        n : int, default 2000
            Samples per model (decoder means, as in the lecture).
        seed : int, default 0
            Seed of the prior samples (the same z for every model).
        columns : int, optional
            Panels per row; default: the number of values of the first swept key.

        Only 2-D data can be drawn this way; other widths raise ``InputError``.

        """
        import matplotlib.pyplot as plt
        import numpy as np

        if self.models[0].x_dim != 2:
            raise InputError(f"SweepResult.figure draws 2-D data only. Got models with x_dim={self.models[0].x_dim} instead.")
        count = len(self.models)
        first = next(iter(self.over.values()), [None])
        columns = columns or min(count, max(len(first), 1)) or 1
        rows = math.ceil(count / columns)
        fig, axes = plt.subplots(rows, columns, figsize=(2.6 * columns, 2.6 * rows), squeeze=False, sharex=True, sharey=True)
        data = None if x is None else np.asarray(x)[:, :2]
        for ax, model, row in zip(axes.flat, self.models, self.table):
            if data is not None:
                ax.scatter(data[:, 0], data[:, 1], s=2, c="0.8", lw=0)
            samples = model.sample(n, condition=condition, seed=seed)
            ax.scatter(samples[:, 0], samples[:, 1], s=2, c="tab:blue", lw=0)
            label = ", ".join(f"{k}={format_value(row[k], 4, nested=False)}" for k in self.over)
            ax.set_title(f"{label}\n-ELBO {row['neg_elbo']:.2f}, div {row['diversity']:.2f}", fontsize=8)
            ax.set_aspect("equal")
        for ax in list(axes.flat)[count:]:
            ax.axis("off")
        fig.tight_layout()
        return fig


def sweep(
    model: Any,
    x: Any,
    condition: Any = None,
    *,
    over: dict[str, Sequence[Any]],
    objective: ELBO | None = None,
    epochs: int = 100,
    batch_size: int = 256,
    lr: float = 1e-3,
    seed: int = 0,
    diversity: Diversity | None = None,
    weight_decay: float = 0.0,
    progress: Callable[[int, int], None] | None = None,
) -> SweepResult:
    """Train one copy of ``model``'s architecture per combination of the values in ``over``.

    Parameters
    ----------
    model : VAE
        Template: its architecture, likelihood and condition are copied; its weights are not
        (each swept model is initialised from its own seed).
    x : array (N, D)
        Training data; condition : array, optional, as for :func:`vaekit.fit`.
    over : dict name -> list
        The grid, e.g. ``{"variance": [0.01, 0.1, 1, 5], "seed": [0, 1, 2]}``: every
        combination is trained (the product of the list lengths). Keys: ``variance`` (fixed
        Gaussian likelihood variance), ``beta`` (KL weight), ``seed`` (initial weights and
        training randomness), ``lr`` (Adam's learning rate).
    objective : ELBO or the model's default objective, default: the model's (``ELBO()`` for a VAE)
        Beta is replaced by the swept value when ``beta`` is swept (ELBO only). Other
        objectives (``VQ`` for a VQVAE) train one model after another with :func:`vaekit.fit`.
    epochs, batch_size, lr, seed, weight_decay : as for :func:`vaekit.fit`; ``lr`` and ``seed``
        are used when not swept. Each model's initial weights come from ``VAE(..., seed=seed)``.
    diversity : Diversity, default ``Diversity()``
        Per-epoch diversity monitor (the same as ``fit``'s default).
    progress : callable(epoch, epochs), optional
        Called after every epoch of the vectorised pass (epoch counts from 1); when models are
        trained one by one, after every epoch of each.

    Returns
    -------
    SweepResult
        ``.table`` (list of dict rows), ``.models``, ``.histories``, ``.figure(x)``.

    Notes
    -----
    Model ``i`` equals, to float rounding, ``VAE(..., seed=s_i)`` trained by
    ``fit(model, x, objective=ELBO(beta=b_i), lr=lr_i, seed=s_i, epochs=..., batch_size=...)``.
    Configurations the fast engine does not cover (see :mod:`vaekit.fastpath`) train together
    through ``torch.func`` (:mod:`vaekit.vmapped`) or, with a swept beta or a posterior other
    than a diagonal Gaussian, one after another with :func:`vaekit.fit`; the results are the same.

    Where ``fit`` raises ``TrainingError`` when the loss stops being finite, a vectorised sweep
    keeps training the other models: the diverged model's History shows the non-finite values
    and a warning is logged.

    """
    if not isinstance(model, LatentVariableModel) or not isinstance(model, torch.nn.Module):
        raise InputTypeError(f"model must be a vaekit model (e.g. vaekit.VAE) used as template. Got {describe(model)} instead.")
    grid = _grid(over)
    epochs = positive_int(epochs, "epochs")
    batch_size = positive_int(batch_size, "batch_size")
    lr = positive_float(lr, "lr")
    weight_decay = positive_float(weight_decay, "weight_decay", allow_zero=True)
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise InputTypeError(f"seed must be an int. Got {describe(seed)} instead.")
    own = default_objective(model)
    objective = own if objective is None else objective
    if not isinstance(objective, (ELBO, type(own))):
        allowed = " or ".join(dict.fromkeys(f"a vaekit.{t.__name__}" for t in (ELBO, type(own))))
        raise InputTypeError(f"objective must be {allowed} for a sweep. Got {describe(objective)} instead.")
    if "beta" in over and not isinstance(objective, ELBO):
        raise InputError(f"over['beta'] needs an ELBO objective. Got {describe(objective)} instead.")
    likelihood = getattr(model.architecture, "likelihood", None)
    if "variance" in over and not isinstance(likelihood, Gaussian):
        raise InputError(f"over['variance'] needs a model with a Gaussian likelihood. Got a template with {likelihood} instead.")
    diversity = Diversity() if diversity is None else diversity

    settings = [_settings(row, objective, lr, seed) for row in grid]
    models = [_build(model, row, s["seed"]) for row, s in zip(grid, settings)]
    start = time.perf_counter()
    # The vectorised engines implement fit's ELBO epoch on CPU; anything else trains through fit itself.
    batched = models[0].device.type == "cpu" and isinstance(objective, ELBO)
    vectorised = batched and _all_proven(models, settings, x, condition, batch_size)  # checks x and condition once
    histories = None
    if vectorised:
        histories = _train_together(models, settings, x, condition, epochs, batch_size, weight_decay, diversity, progress)
    elif batched and all(s["objective"] == settings[0]["objective"] for s in settings) and vmapped.supported(models[0]):
        histories = vmapped.train(
            models,
            [s["objective"] for s in settings],
            [s["lr"] for s in settings],
            [s["seed"] for s in settings],
            x,
            condition,
            epochs=epochs,
            batch_size=batch_size,
            weight_decay=weight_decay,
            monitor=diversity,
            progress=progress,
        )
        vectorised = True
        logger.info("sweep: %d models trained together with torch.func (vmap over autograd)", len(models))
    if histories is None:
        logger.info(
            "sweep: %d models trained one after another with fit (a swept beta, or a posterior whose noise cannot "
            "be drawn outside vmap)",
            len(models),
        )
        histories = [
            fit(
                m,
                x,
                condition,
                objective=s["objective"],
                epochs=epochs,
                batch_size=batch_size,
                lr=s["lr"],
                seed=s["seed"],
                monitors={} if "diversity" in not_applicable(m) else {"diversity": diversity},
                weight_decay=weight_decay,
                progress=None if progress is None else lambda epoch, total, _record: progress(epoch, total),
            )
            for m, s in zip(models, settings)
        ]
    seconds = time.perf_counter() - start
    table = [_row(g, h) for g, h in zip(grid, histories)]
    logger.info("sweep of %d models in %.2f s (vectorised=%s)", len(models), seconds, vectorised)
    return SweepResult(table, models, histories, seconds, vectorised, {k: list(v) for k, v in over.items()})


def _all_proven(models: list[Any], settings: list[dict[str, Any]], x: Any, condition: Any, batch_size: int) -> bool:
    """Whether every model's hand-written ELBO engine matches autograd on the first batch (as fit checks)."""
    if not all(fastpath.supports(m, s["objective"]) for m, s in zip(models, settings)):
        return False  # no engine to prove: skip preparing the data
    # The models share architecture, device and dtype: the data is checked and converted once.
    xt = models[0].prepare_x(x)
    c = models[0].prepare_condition(condition, xt.shape[0])
    c_first = None if c is None else c[:batch_size]
    for model, s in zip(models, settings):
        model.set_scaling(xt)
        if proven_accelerator(model, s["objective"], xt[:batch_size], c_first, 0, model.device) is None:
            return False
    return True


def _grid(over: Any) -> list[dict[str, Any]]:
    if not isinstance(over, dict) or not over:
        raise InputTypeError(
            f"over must be a non-empty dict of hyperparameter -> list of values, e.g. {{'variance': [0.1, 1.0]}}. "
            f"Got {describe(over)} instead."
        )
    for key, values in over.items():
        if key not in SWEEPABLE:
            raise InputError(f"over keys must be among {list(SWEEPABLE)}. Got {key!r} instead.")
        if isinstance(values, (str, bytes)) or not isinstance(values, Sequence) or len(values) == 0:
            raise InputError(f"over[{key!r}] must be a non-empty list of values. Got {describe(values)} instead.")
        for v in values:
            if key == "seed":
                if isinstance(v, bool) or not isinstance(v, int):
                    raise InputTypeError(f"over['seed'] values must be ints. Got {describe(v)} instead.")
            elif key == "beta":
                positive_float(v, "over['beta'] values", allow_zero=True)
            else:
                positive_float(v, f"over[{key!r}] values")
    keys = list(over)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(over[k] for k in keys))]


def _settings(row: dict[str, Any], objective: ELBO, lr: float, seed: int) -> dict[str, Any]:
    return {
        "objective": replace(objective, beta=float(row["beta"])) if "beta" in row else objective,
        "lr": float(row.get("lr", lr)),
        "seed": int(row.get("seed", seed)),
    }


def _build(template: Any, row: dict[str, Any], seed: int) -> Any:
    """The template's architecture (its config dataclass), with the swept likelihood variance, seeded."""
    arch = template.architecture
    if "variance" in row:
        arch = replace(arch, likelihood=replace(arch.likelihood, variance=float(row["variance"])))
    model = type(template).from_architecture(arch, seed=seed)  # as VAE(..., seed=seed)
    return model.to(template.device, template.dtype)


def _row(grid_row: dict[str, Any], history: History) -> dict[str, Any]:
    last = history.last()
    keys = ("loss", "reconstruction", "reconstruction_nll", "kl", "neg_elbo", "diversity")
    return {**grid_row, **{k: last[k] for k in keys if k in last}}


@torch.no_grad()
def _train_together(models, settings, x, condition, epochs, batch_size, weight_decay, diversity, progress) -> list[History]:
    """The vectorised loop: ``fit``'s epoch for M stacked models (see vaekit.fastpath)."""
    first = models[0]
    x_all, c_all = vmapped.prepare_together(models, x, condition)
    per_model = [fastpath.parameters(m)[0] for m in models]
    layout = fastpath.parameters(first)[1]
    params = [torch.stack(ts).clone() for ts in zip(*per_model)]  # each (M, ...)
    consts = [fastpath.constants(m) for m in models]
    const = fastpath.Constants(
        consts[0].x_shift,  # identical for all: same data
        consts[0].x_scale,
        torch.stack([k.x_std for k in consts]).unsqueeze(1),  # (M, 1, D)
        torch.stack([k.nll_const for k in consts]),  # (M,)
    )
    generators = [torch.Generator(device=x_all.device).manual_seed(s["seed"]) for s in settings]
    adam = vmapped.BatchedAdam(params, torch.tensor([s["lr"] for s in settings], dtype=x_all.dtype), weight_decay)
    objectives = [s["objective"] for s in settings]
    free_bits = objectives[0].free_bits
    n, count = x_all.shape[0], len(models)
    histories = [History() for _ in models]
    alive = torch.ones(count, dtype=torch.bool)
    for epoch in range(epochs):
        beta = torch.tensor([o.beta_at(epoch) for o in objectives], dtype=x_all.dtype).view(count, 1, 1)
        # One permutation per model, from its own generator, exactly as fit's randperm.
        order = torch.stack([torch.randperm(n, generator=g, device=x_all.device) for g in generators])  # (M, N)
        sums = torch.zeros(count, 3 + layout.z_dim, dtype=x_all.dtype)
        for start in range(0, n, batch_size):
            idx = order[:, start : start + batch_size]  # (M, B)
            xb = x_all[idx]  # (M, B, D)
            cb = None if c_all is None else c_all[idx]
            eps = torch.stack(
                [torch.randn(idx.shape[1], layout.z_dim, generator=g, device=x_all.device, dtype=x_all.dtype) for g in generators]
            )
            grads, batch_sums = fastpath.elbo_step(params, layout, const, xb, cb, eps, beta, free_bits)
            adam.step(params, grads)
            sums += batch_sums
        terms = fastpath.history_record(sums, const.nll_const, n, beta)
        values = {k: (v.double() / n).tolist() for k, v in terms.items()}
        div = _diversity(params, layout, const, c_all, generators, diversity, epoch, epochs)
        for i, history in enumerate(histories):
            record = {k: v[i] for k, v in values.items()}
            record["diversity"] = div[i]
            if alive[i] and not math.isfinite(record["loss"]):
                alive[i] = False
                logger.warning("sweep: model %d diverged in epoch %d (loss %s)", i, epoch + 1, record["loss"])
            history.append(record)
        if progress is not None:
            progress(epoch + 1, epochs)
    for i, m in enumerate(models):
        for p, stacked in zip(per_model[i], params):
            p.copy_(stacked[i])
        m.eval()
    return histories


def _diversity(params, layout, const, c_all, generators, monitor, epoch, epochs) -> list[float]:
    """Diversity of every model's decoded prior samples, drawing what Diversity draws, in order."""
    if not ((epoch + 1) % monitor.every == 0 or epoch == epochs - 1):
        return [math.nan] * len(generators)
    z, cs = [], []
    for g in generators:
        z.append(torch.randn(monitor.n_samples, layout.z_dim, generator=g, device=params[0].device, dtype=params[0].dtype))
        if c_all is not None:
            cs.append(c_all[torch.randint(c_all.shape[0], (monitor.n_samples,), generator=g, device=c_all.device)])
    zin = torch.stack(z)  # (M, S, Z)
    if c_all is not None:
        zin = torch.cat([zin, torch.stack(cs)], dim=-1)
    # Decode in blocks of rows: (M, 2048, 128) activations spill out of cache, blocks of 256 do not.
    loc = torch.cat(
        [fastpath.decode_mean(params, layout, const, zin[:, i : i + 256]) for i in range(0, zin.shape[1], 256)], dim=1
    )
    return loc.var(dim=1, correction=0).mean(-1).tolist()
