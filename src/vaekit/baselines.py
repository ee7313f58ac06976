"""Linear baselines a VAE has to beat: PCA reconstruction and probabilistic PCA likelihood.

Both are fitted on training data and scored on any data in the user's units, the units of the
model's own numbers (a model that standardises internally reports its likelihoods with the
standardisation undone; see :mod:`vaekit.metrics`).

* :class:`PCA` keeps the top ``q`` eigenvectors of the training covariance
  S = (1/N) sum_i (x_i - mu)(x_i - mu)^T. Its reconstruction error is the mean squared error
  per element, ``mean_{i,d} (x_id - xhat_id)^2``; on the training data it equals the sum of the
  discarded eigenvalues of S divided by D.
* :class:`PPCA` is Tipping & Bishop's (1999) probabilistic PCA with its closed-form maximum
  likelihood: x ~ N(mu, W W^T + sigma² I) with W = U_q (Lambda_q - sigma² I)^{1/2} (U_q the top
  ``q`` eigenvectors of S, Lambda_q their eigenvalues) and sigma² the mean of the D - q discarded
  eigenvalues. Its NLL, -log N(x; mu, W W^T + sigma² I) in nats per row, is computed through
  Woodbury's identity and the Cholesky factor of the q x q matrix M = W^T W + sigma² I, so a
  D x D covariance is never formed or inverted (D = 784 costs a 784 x 784 eigendecomposition
  once, then O(N D q) per score).

  sigma² has a floor, :data:`NOISE_FLOOR` times the mean eigenvalue trace(S) / D (and at least
  :data:`ABSOLUTE_FLOOR`): with eigenvalues of 0 (constant columns, fewer rows than columns) the
  maximum-likelihood sigma² is 0 and the density singular. The fitted value says whether the
  floor was hit (:attr:`PPCA.floored`). With q >= D nothing is discarded: the model is the
  full-covariance Gaussian N(mu, S) (eigenvalues below the floor raised to it).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from vaekit.errors import InputError
from vaekit.validate import float_matrix, positive_int

# sigma² >= NOISE_FLOOR * trace(S) / D, and >= ABSOLUTE_FLOOR (data whose every column is constant).
NOISE_FLOOR = 1e-6
ABSOLUTE_FLOOR = 1e-12
LOG_2PI = math.log(2.0 * math.pi)


def _rows(x: Any, name: str, width: int | None = None) -> np.ndarray:
    """Finite (N, D) float64 rows (float32 precision, as the models see them)."""
    return float_matrix(x, name, width=width).double().numpy()


def covariance_eigen(x: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean (D,), eigenvalues (D,) in decreasing order (clipped at 0), eigenvectors (D, D) as columns.

    Of the (1/N) covariance of float64 rows ``x`` (N, D). :class:`PCA`, :class:`PPCA` and the
    PCA start of :class:`vaekit.nn.PCAResidual` all read it, so the three agree by construction.
    """
    mu = x.mean(0)
    r = x - mu
    values, vectors = np.linalg.eigh(r.T @ r / x.shape[0])  # ascending
    return mu, np.clip(values[::-1], 0.0, None), vectors[:, ::-1]


def noise_floor(eigenvalues: np.ndarray) -> float:
    """The smallest variance a fitted linear-Gaussian model may use: NOISE_FLOOR x the mean eigenvalue, and ABSOLUTE_FLOOR."""
    return max(NOISE_FLOOR * float(np.mean(eigenvalues)), ABSOLUTE_FLOOR)


class PCA:
    """Principal component analysis with ``n_components`` components, fitted by :meth:`fit`.

    Parameters
    ----------
    n_components : int
        q, the number of components kept (a model's latent size); q >= D keeps everything.

    Attributes (after :meth:`fit`)
    ------------------------------
    mean : (D,) training mean.
    components : (q', D) orthonormal directions, q' = min(q, D).
    eigenvalues : (D,) eigenvalues of the training covariance (1/N normalisation), decreasing.

    """

    def __init__(self, n_components: int) -> None:
        self.n_components = positive_int(n_components, "n_components")

    def fit(self, x: Any) -> PCA:
        """Fit on training data ``x`` (N, D); returns self."""
        rows = _rows(x, "x")
        self.mean, self.eigenvalues, vectors = covariance_eigen(rows)
        self.components = vectors[:, : min(self.n_components, rows.shape[1])].T.copy()  # (q, D)
        return self

    def reconstruct(self, x: Any) -> np.ndarray:
        """Projection of ``x`` (N, D) onto the mean plus the kept components: (N, D) float64."""
        r = _rows(x, "x", self.mean.shape[0]) - self.mean
        return self.mean + (r @ self.components.T) @ self.components

    def mse(self, x: Any) -> float:
        """Mean squared reconstruction error per element, mean_{i,d} (x_id - xhat_id)^2."""
        rows = _rows(x, "x", self.mean.shape[0])
        return float(((rows - self.reconstruct(rows)) ** 2).mean())

    def sample(self, n: int, *, seed: int = 0) -> np.ndarray:
        """PCA's "samples": mean + sum_k sqrt(lambda_k) eps_k u_k, eps ~ N(0, I_q) seeded: (n, D) float64.

        The Gaussian of the kept components (no noise off them), the PCA counterpart of a VAE's
        decoder means at z ~ p(z). ``eps`` is ``numpy.random.default_rng(seed).standard_normal((n, q))``.
        """
        n = positive_int(n, "n")
        q = self.components.shape[0]
        eps = np.random.default_rng(seed).standard_normal((n, q))  # (n, q)
        return self.mean + (eps * np.sqrt(self.eigenvalues[:q])) @ self.components


class PPCA:
    """Probabilistic PCA (Tipping & Bishop, 1999) with latent size ``n_components``, fitted in closed form.

    Parameters
    ----------
    n_components : int
        q, the latent size; q >= D gives the full-covariance Gaussian.

    Attributes (after :meth:`fit`)
    ------------------------------
    mean : (D,) mu.
    W : (D, q') loading matrix U_q (Lambda_q - sigma² I)^{1/2}, q' = min(q, D).
    sigma2 : float, the noise variance (mean of the discarded eigenvalues, at least the floor).
    floor : float, the floor that applied (see the module docstring).
    floored : bool, True when the maximum-likelihood sigma² was below the floor and raised to it.

    The attributes may be set by hand (``mean``, ``W``, ``sigma2``): :meth:`log_prob` uses them
    as they are, for any W, not only the fitted one.

    """

    def __init__(self, n_components: int) -> None:
        self.n_components = positive_int(n_components, "n_components")

    def fit(self, x: Any) -> PPCA:
        """Maximum-likelihood fit to training data ``x`` (N, D); returns self."""
        rows = _rows(x, "x")
        d = rows.shape[1]
        q = min(self.n_components, d)
        self.mean, values, vectors = covariance_eigen(rows)
        self.floor = noise_floor(values)
        ml = float(values[q:].mean()) if q < d else 0.0
        self.floored = ml < self.floor
        self.sigma2 = max(ml, self.floor)
        self.W = vectors[:, :q] * np.sqrt(np.clip(values[:q] - self.sigma2, 0.0, None))  # (D, q)
        return self

    def covariance(self) -> np.ndarray:
        """W W^T + sigma² I: (D, D) (for checks on small D; scoring never forms it)."""
        return self.W @ self.W.T + self.sigma2 * np.eye(self.W.shape[0])

    def log_prob(self, x: Any) -> np.ndarray:
        """The log density log N(x; mu, W W^T + sigma² I) of every row: (N,) float64, nats.

        With M = W^T W + sigma² I (q x q) = L L^T, Woodbury gives
        r^T C^{-1} r = (|r|² - |L^{-1} W^T r|²) / sigma² and log det C = (D - q) log sigma² + log det M.
        """
        if not (math.isfinite(self.sigma2) and self.sigma2 > 0):
            raise InputError(f"PPCA sigma2 must be a finite number > 0. Got {self.sigma2} instead.")
        r = _rows(x, "x", self.mean.shape[0]) - self.mean  # (N, D)
        d, q = self.W.shape
        m = self.W.T @ self.W + self.sigma2 * np.eye(q)  # (q, q)
        chol = np.linalg.cholesky(m)
        y = np.linalg.solve(chol, (r @ self.W).T)  # (q, N)
        # |r|² - |y|² >= 0 in exact arithmetic; rounding can push a point in W's span below.
        quad = np.clip((r**2).sum(1) - (y**2).sum(0), 0.0, None) / self.sigma2  # (N,)
        logdet = (d - q) * math.log(self.sigma2) + 2.0 * float(np.log(np.diag(chol)).sum())
        return -0.5 * (d * LOG_2PI + logdet + quad)

    def nll(self, x: Any) -> float:
        """Mean -log p(x) in nats per row."""
        return float(-self.log_prob(x).mean())


def baseline_metrics(
    train_x: Any, x: Any, n_components: int, *, likelihood: bool = True, per_row: bool = False
) -> dict[str, Any]:
    """PCA and PPCA with ``n_components`` fitted on ``train_x`` and scored on ``x``, as evaluate() reports them.

    Returns ``pca_mse`` (mean squared error per element, the units of ``reconstruction_mse``),
    ``pca_components`` (q actually kept, min(q, D)), and, when ``likelihood`` is True,
    ``ppca_nll`` (nats per row), ``ppca_sigma2`` and ``ppca_sigma2_floored`` (True: the floor
    applied); with ``per_row`` also ``ppca_log_prob``, float64 (N,): log p(x) of each row of ``x``.
    """
    pca = PCA(n_components).fit(train_x)
    out: dict[str, Any] = {"pca_mse": pca.mse(x), "pca_components": int(pca.components.shape[0])}
    if likelihood:
        ppca = PPCA(n_components).fit(train_x)
        log_p = ppca.log_prob(x)  # (N,), once for the mean and the rows
        out |= {"ppca_nll": float(-log_p.mean()), "ppca_sigma2": ppca.sigma2, "ppca_sigma2_floored": ppca.floored}
        if per_row:
            out["ppca_log_prob"] = log_p
    return out
