"""Numpy regressors of the replay surrogate: a mean and an uncertainty per prediction.

Both fit in a fraction of a second on a shipped table and predict a batch of rows in a few
vectorised numpy operations (no scikit-learn, torch or thread pool per step):

* `RandomFeatureEnsemble`: M members, each a ridge regression on H random ReLU features of the
  standardised inputs, fitted on its own bootstrap sample of the rows (a bagged random-feature
  network). The members agree where the table has rows and drift apart away from them (their
  random features extrapolate linearly with different slopes), so the spread of their predictions
  measures how far a query is from what was recorded.
* `NearestNeighbours`: distance-weighted k-nearest-neighbour regression; its uncertainty is the
  weighted standard deviation of the neighbours' targets.

``predict(X)`` returns ``(mean, std)``: the mean of every target, shape ``(n, K)``, and the
uncertainty of the first target (the accuracy change for the surrogate), shape ``(n,)``.
"""

from __future__ import annotations

import numpy as np

MIN_SCALE = 1e-6
"""Columns whose standard deviation is below this are constant (up to rounding): scale 1."""


def _standardiser(X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Column means and scales; a constant column (a std of rounding noise) keeps scale 1.

    A column that was constant in the fitted rows (say, one lr recorded) would otherwise be
    divided by ~1e-15 and turn any other value into an astronomically large input.
    """
    mean, scale = X.mean(axis=0), X.std(axis=0)
    scale[scale < MIN_SCALE] = 1.0
    return mean, scale


class RandomFeatureEnsemble:
    """Bagged ridge regressions on random ReLU features (numpy; deterministic given `seed`).

    Args:
        members: Ensemble size M.
        features: Random features H per member.
        ridge: L2 penalty of each member's readout per fitted row (targets are standardised).
        scale: Standard deviation of the random weights (times 1/sqrt(inputs)) and biases.
        seed: Seed of the random features and the bootstrap samples.

    The defaults were chosen by ``benchmarks/surrogate_fit.py --select``: 10-fold CV grouped by
    task over the train and val tasks of the default table (never its test tasks).
    """

    def __init__(self, members: int = 8, features: int = 256, ridge: float = 0.003,
                 scale: float = 1.0, seed: int = 0) -> None:
        self.members, self.features, self.ridge, self.scale = members, features, ridge, scale
        self.seed = seed

    def fit(self, X: np.ndarray, Y: np.ndarray) -> RandomFeatureEnsemble:
        """Fit every member on a bootstrap sample; fold the standardisation into the weights."""
        rng = np.random.default_rng(self.seed)
        x_mean, x_scale = _standardiser(X)
        y_mean, y_scale = _standardiser(Y)
        Z, T = (X - x_mean) / x_scale, (Y - y_mean) / y_scale
        (n, f), (M, H) = Z.shape, (self.members, self.features)
        W = rng.normal(0.0, self.scale / np.sqrt(f), (f, M * H))
        b = rng.normal(0.0, self.scale, M * H)
        V, c = np.empty((M, H, T.shape[1])), np.empty((M, T.shape[1]))
        for m in range(M):
            rows = rng.integers(0, n, n)
            P = np.maximum(Z[rows] @ W[:, m * H:(m + 1) * H] + b[m * H:(m + 1) * H], 0.0)
            P = np.hstack([P, np.ones((n, 1))])
            solved = np.linalg.solve(P.T @ P + self.ridge * n * np.eye(H + 1), P.T @ T[rows])
            V[m], c[m] = solved[:-1], solved[-1]
        # Inputs: (X - x_mean) / x_scale @ W + b == X @ W' + b'. Outputs: one matrix R whose
        # first K columns give the members' mean of every target (in target units) and whose
        # next M columns give each member's deviation of the first target from that mean,
        # divided by sqrt(M) so that the norm of a row's deviations is their standard deviation.
        self.W, self.b = W / x_scale[:, None], b - (x_mean / x_scale) @ W
        K = T.shape[1]
        self.R = np.zeros((M * H, K + M))
        self.R[:, :K] = (V * y_scale).reshape(M * H, K) / M
        self.r = np.concatenate([c.mean(axis=0) * y_scale + y_mean, np.zeros(M)])
        for m in range(M):
            self.R[m * H:(m + 1) * H, K + m] = V[m, :, 0] * y_scale[0] / np.sqrt(M)
            self.r[K + m] = (c[m, 0] * y_scale[0] + y_mean[0]) / np.sqrt(M)
        self.R[:, K:] -= self.R[:, :1] / np.sqrt(M)
        self.r[K:] -= self.r[0] / np.sqrt(M)
        self.n_targets = K
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Members' mean of every target and their standard deviation of the first."""
        P = X @ self.W
        P += self.b
        np.maximum(P, 0.0, out=P)
        out = P @ self.R
        out += self.r
        K = self.n_targets
        return out[:, :K], np.sqrt(np.einsum("ij,ij->i", out[:, K:], out[:, K:]))


class NearestNeighbours:
    """Distance-weighted k-nearest-neighbour regression on standardised inputs (numpy only)."""

    def __init__(self, k: int = 5) -> None:
        self.k = k

    def fit(self, X: np.ndarray, Y: np.ndarray) -> NearestNeighbours:
        """Remember the standardised inputs and their targets."""
        self.mean, self.scale = _standardiser(X)
        self.Z, self.Y = (X - self.mean) / self.scale, np.asarray(Y, dtype=np.float64)
        self.sq = (self.Z**2).sum(axis=1)
        return self

    def predict(self, X: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Weighted mean of the k nearest rows' targets (weights 1 / distance).

        The uncertainty is the weighted standard deviation of their first target.
        """
        Z = (X - self.mean) / self.scale
        d2 = np.maximum((Z**2).sum(axis=1)[:, None] - 2.0 * Z @ self.Z.T + self.sq[None], 0.0)
        k = min(self.k, len(self.Z))
        idx = np.argpartition(d2, k - 1, axis=1)[:, :k]
        w = 1.0 / (np.sqrt(np.take_along_axis(d2, idx, axis=1)) + 1e-6)
        w /= w.sum(axis=1, keepdims=True)
        Yk = self.Y[idx]
        mean = (w[..., None] * Yk).sum(axis=1)
        std = np.sqrt((w * (Yk[:, :, 0] - mean[:, None, 0]) ** 2).sum(axis=1))
        return mean, std
