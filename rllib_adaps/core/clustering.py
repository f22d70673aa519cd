"""k-means over identity vectors, and the choice of K when the user leaves it open.

K is chosen by the highest mean silhouette over K = 2..N-1: a one-agent cluster scores 0 for
its agent but lifts the others' scores when the agent is far from the rest (a role held by one
agent stays alone), and splitting a tight type lowers its agents' scores (K does not drift to
N-1). Other criteria were measured against it and are kept in ``bench/k_criteria.py``
(``docs/results/identity_recovery_k_criteria.txt``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Optional

import numpy as np
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import silhouette_score


def kmeans(identities: np.ndarray, k: int, seed: int) -> np.ndarray:
    """k-means++ with 10 restarts; K = 1 and K = N need no search."""
    if k == 1:
        return np.zeros(len(identities), dtype=np.int64)
    if k == len(identities):
        return np.arange(k, dtype=np.int64)
    with warnings.catch_warnings():  # fewer distinct points than k: some clusters coincide
        warnings.simplefilter("ignore", ConvergenceWarning)
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(identities)


def kmeans_path(identities: np.ndarray, seed: int = 0) -> dict[int, np.ndarray]:
    """k-means labels of ``identities`` for every K = 1..N."""
    identities = np.asarray(identities, dtype=np.float64)
    return {k: kmeans(identities, k, seed) for k in range(1, len(identities) + 1)}


def select_num_clusters(identities: np.ndarray, seed: int = 0, labels_of: Optional[dict[int, np.ndarray]] = None) -> dict:
    """K by the highest mean silhouette over K = 2..N-1.

    Returns ``{"criterion", "scores", "excluded", "chosen"}``: ``scores`` maps ``str(K)`` to the
    silhouette, ``excluded`` gives the reason for each K that could not be scored.
    """
    x = np.asarray(identities, dtype=np.float64)
    n = len(x)
    if n == 1:
        return {"criterion": "silhouette", "scores": {}, "excluded": {}, "chosen": 1}
    labels_of = labels_of if labels_of is not None else kmeans_path(x, seed)
    scores: dict[str, float] = {}
    excluded = {"1": "silhouette is undefined for one cluster", str(n): "silhouette is undefined with every agent alone"}
    for k in range(2, n):
        if len(np.unique(labels_of[k])) < 2:
            excluded[str(k)] = "k-means found fewer than 2 clusters"
        else:
            scores[str(k)] = float(silhouette_score(x, labels_of[k]))
    chosen = int(max(scores, key=scores.get)) if scores else 1
    return {"criterion": "silhouette", "scores": scores, "excluded": excluded, "chosen": chosen}


#: ``(identities, seed, labels_of) -> selection``: how K is chosen (benchmarks pass others).
KSelector = Callable[[np.ndarray, int, dict], dict]


@dataclass
class Clustering:
    labels: np.ndarray  # [N] cluster of each agent, 0..K-1, numbered in order of first agent
    centres: np.ndarray  # [K, z_dim] mean identity of each cluster
    num_clusters: int
    #: How K was chosen: {"criterion", "scores": {str(k): float}, "excluded": {str(k): reason},
    #: "chosen"}; with a fixed K, criterion "given" and no scores.
    selection: dict = field(default_factory=dict)


def cluster_identities(
    identities: np.ndarray,
    num_clusters: Optional[int] = None,
    seed: int = 0,
    *,
    groups: Optional[np.ndarray] = None,
    select: KSelector = select_num_clusters,
) -> Clustering:
    """k-means on identity vectors, with a fixed K or K chosen by ``select``.

    ``groups`` ([N] ints): agents of different groups never share a cluster; a cluster that
    mixes groups is split by group, so K can end up larger than the k-means K (the selection
    record then says so).
    """
    identities = np.asarray(identities, dtype=np.float64)
    n = len(identities)
    if num_clusters is None:
        if n < 3:
            raise ValueError(f"Choosing K automatically needs at least 3 agents, got N={n}; set num_clusters explicitly.")
        labels_of = kmeans_path(identities, seed)
        selection = select(identities, seed, labels_of)
        labels = labels_of[selection["chosen"]]
    else:
        if not 1 <= num_clusters <= n:
            raise ValueError(f"num_clusters must be in [1, {n}] (number of agents), got {num_clusters}.")
        selection = {"criterion": "given", "scores": {}, "excluded": {}, "chosen": num_clusters}
        labels = kmeans(identities, num_clusters, seed)
    if groups is not None:
        _, labels = np.unique(np.stack([labels, np.asarray(groups, dtype=np.int64)], axis=1), axis=0, return_inverse=True)
        labels = labels.ravel()
        if len(np.unique(labels)) != selection["chosen"]:
            selection = dict(selection, criterion=selection["criterion"] + " + split by observation/action space",
                             chosen=int(len(np.unique(labels))))
    labels = _relabel_by_first_agent(labels)
    k = int(labels.max()) + 1
    centres = np.stack([identities[labels == c].mean(axis=0) for c in range(k)])
    return Clustering(labels, centres, k, selection)


def _relabel_by_first_agent(labels: np.ndarray) -> np.ndarray:
    """Renumbers clusters in order of their first agent, so that labels are canonical."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.ravel()].astype(np.int64)
