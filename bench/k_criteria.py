"""K criteria measured against the library's silhouette rule (``bench/identity_recovery.py --criteria``).

Each is a ``KSelector`` for ``rllib_adaps.core.clustering.cluster_identities(select=...)``:
``(identities, seed, labels_of) -> {"criterion", "scores", "excluded", "chosen"}``. Results:
``docs/results/identity_recovery_k_criteria.txt``.

- ``davies_bouldin``: lowest index over K = 2..N-1 among clusterings without one-agent clusters.
- ``davies_bouldin_floor``: the same with each one-agent cluster credited the median scatter of
  the others.
- ``gap``: Tibshirani's gap statistic over K = 1..N-1 (20 uniform references in the
  principal-axes box): the smallest K with gap(K) >= gap(K+1) - s(K+1).
- ``bic``: spherical Gaussian mixture with a shared variance fitted by k-means, lowest BIC.
"""

from __future__ import annotations

from functools import partial

import numpy as np
from sklearn.metrics import davies_bouldin_score

from rllib_adaps.core.clustering import kmeans, select_num_clusters


def _scatter(x: np.ndarray, labels: np.ndarray, k: int):
    """Per cluster: centre, mean distance to it, mean squared distance to it."""
    counts = np.bincount(labels, minlength=k)
    centres = np.zeros((k, x.shape[1]))
    np.add.at(centres, labels, x)
    centres /= np.maximum(counts, 1)[:, None]
    dist = np.linalg.norm(x - centres[labels], axis=1)
    mean_dist = np.bincount(labels, weights=dist, minlength=k) / np.maximum(counts, 1)
    mean_sq = np.bincount(labels, weights=dist**2, minlength=k) / np.maximum(counts, 1)
    return centres, mean_dist, mean_sq


def _davies_bouldin_floor(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    counts = np.bincount(labels, minlength=k)
    centres, scatter, _ = _scatter(x, labels, k)
    scatter = np.where(counts > 1, scatter, np.median(scatter[counts > 1]))
    separation = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(separation, np.inf)
    return float(np.mean(np.max((scatter[:, None] + scatter[None]) / np.maximum(separation, 1e-12), axis=1)))


def _log_within_dispersion(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    _, _, mean_sq = _scatter(x, labels, k)
    counts = np.bincount(labels, minlength=k)
    return float(np.log(max((mean_sq * counts).sum() / 2.0, 1e-300)))


def davies_bouldin(identities, seed, labels_of, floor: bool = False) -> dict:
    x, n = np.asarray(identities, dtype=np.float64), len(identities)
    name = "davies_bouldin_floor" if floor else "davies_bouldin"
    scores, excluded = {}, {"1": f"{name} is undefined for one cluster", str(n): f"{name} is undefined with every agent alone"}
    for k in range(2, n):
        labels = labels_of[k]
        if len(np.unique(labels)) < 2:
            excluded[str(k)] = "k-means found fewer than 2 clusters"
        elif floor:
            scores[str(k)] = _davies_bouldin_floor(x, labels, k)
        elif np.bincount(labels).min() < 2:
            excluded[str(k)] = "has a one-agent cluster"
        else:
            scores[str(k)] = float(davies_bouldin_score(x, labels))
    chosen = int(min(scores, key=scores.get)) if scores else 1
    return {"criterion": name, "scores": scores, "excluded": excluded, "chosen": chosen}


def gap(identities, seed, labels_of) -> dict:
    x, n = np.asarray(identities, dtype=np.float64), len(identities)
    rng = np.random.default_rng(seed)
    centred = x - x.mean(axis=0)
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    projected = centred @ vt.T
    low, high = projected.min(axis=0), projected.max(axis=0)
    references = [rng.uniform(low, high, size=projected.shape) for _ in range(20)]
    values, spread, scores = {}, {}, {}
    for k in range(1, n):
        observed = _log_within_dispersion(projected, labels_of[k], k)
        ref = np.array([_log_within_dispersion(r, kmeans(r, k, seed), k) for r in references])
        values[k] = float(ref.mean() - observed)
        spread[k] = float(ref.std() * np.sqrt(1 + 1 / len(references)))
        scores[str(k)] = values[k]
    chosen = next((k for k in range(1, n - 1) if values[k] >= values[k + 1] - spread[k + 1]), n - 1)
    return {"criterion": "gap", "scores": scores, "excluded": {str(n): "gap is undefined with every agent alone"},
            "chosen": int(chosen)}


def bic(identities, seed, labels_of) -> dict:
    x, n = np.asarray(identities, dtype=np.float64), len(identities)
    d, scores = x.shape[1], {}
    for k in range(1, n):
        labels = labels_of[k]
        counts = np.bincount(labels, minlength=k)
        _, _, mean_sq = _scatter(x, labels, k)
        variance = max(float((mean_sq * counts).sum()) / (n * d), 1e-300)
        log_likelihood = -0.5 * n * d * (np.log(2 * np.pi * variance) + 1) + float(
            np.sum(counts[counts > 0] * np.log(counts[counts > 0] / n)))
        scores[str(k)] = float(-2 * log_likelihood + (k * d + 1 + (k - 1)) * np.log(n))
    return {"criterion": "bic", "scores": scores, "chosen": int(min(scores, key=scores.get)),
            "excluded": {str(n): "bic is undefined with every agent alone (zero variance)"}}


K_CRITERIA = {
    "silhouette": select_num_clusters,
    "gap": gap,
    "davies_bouldin": davies_bouldin,
    "davies_bouldin_floor": partial(davies_bouldin, floor=True),
    "bic": bic,
}
