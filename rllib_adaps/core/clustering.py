"""k-means over identity vectors, and the choice of K when the user leaves it open.

K is chosen by the highest mean silhouette over every K = 2..N-1. The candidate partition for
each K comes from one Ward hierarchy (nested: K + 1 splits one cluster of K), which makes
scoring all N - 2 of them one O(N^3) pass (``ward_silhouettes``) instead of one k-means per K;
the chosen partition is then refined by k-means started from its centres. Nothing bounds the
search, so it cannot miss the true K; 600 agents take about a second.

Why the silhouette: a one-agent cluster scores 0 for its agent but lifts the others' scores
when the agent is far from the rest (a role held by one agent stays alone), and splitting a
tight type lowers its agents' scores (K does not drift to N-1). Other criteria were measured
against it and are kept in ``bench/k_criteria.py``
(``docs/results/identity_recovery_k_criteria.txt``).
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from typing import Callable, Mapping, Optional

import numpy as np
from scipy.cluster.hierarchy import cut_tree, linkage
from scipy.spatial.distance import cdist
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning


def kmeans(identities: np.ndarray, k: int, seed: int, init: Optional[np.ndarray] = None) -> np.ndarray:
    """k-means (k-means++ with 10 restarts, or one run from ``init`` centres); K = 1 and K = N
    need no search."""
    if k == 1:
        return np.zeros(len(identities), dtype=np.int64)
    if k == len(identities):
        return np.arange(k, dtype=np.int64)
    with warnings.catch_warnings():  # fewer distinct points than k: some clusters coincide
        warnings.simplefilter("ignore", ConvergenceWarning)
        if init is not None:
            return KMeans(n_clusters=k, init=init, n_init=1, random_state=seed).fit_predict(identities)
        return KMeans(n_clusters=k, n_init=10, random_state=seed).fit_predict(identities)


class WardPartitions(Mapping):
    """The Ward hierarchy of ``identities`` as a mapping K -> labels (partition into K clusters)."""

    def __init__(self, identities: np.ndarray):
        self.identities = np.asarray(identities, dtype=np.float64)
        self.linkage = linkage(self.identities, "ward") if len(self.identities) > 1 else np.zeros((0, 4))

    def __getitem__(self, k: int) -> np.ndarray:
        n = len(self.identities)
        if not 1 <= k <= n:
            raise KeyError(k)
        if n == 1:
            return np.zeros(1, dtype=np.int64)
        return cut_tree(self.linkage, n_clusters=[k]).ravel().astype(np.int64)

    def __iter__(self):
        return iter(range(1, len(self.identities) + 1))

    def __len__(self) -> int:
        return len(self.identities)


def ward_silhouettes(partitions: WardPartitions) -> dict[int, float]:
    """Mean silhouette of the hierarchy's partition for every K = 2..N-1, exactly as sklearn
    computes it (a one-agent cluster scores 0), in one top-down pass over the splits.

    Keeps ``S[i, node]``, the summed distance of agent i to a node's members; a split computes
    its smaller child's column and gets the other by subtraction, so the whole path costs
    O(N^3) numpy work instead of N - 2 silhouette computations from scratch.
    """
    x, z = partitions.identities, partitions.linkage
    n = len(x)
    if n < 3:
        return {}
    distances = cdist(x, x)
    members = [np.array([i]) for i in range(n)]
    for left, right in z[:, :2].astype(np.int64):
        members.append(np.concatenate([members[left], members[right]]))
    nodes = 2 * n - 1
    sums = np.zeros((n, nodes))
    sums[:, nodes - 1] = distances.sum(axis=1)
    sizes = np.array([len(m) for m in members], dtype=np.float64)
    node_of = np.full(n, nodes - 1)
    active = [nodes - 1]
    column = np.zeros(nodes, dtype=np.int64)
    rows = np.arange(n)
    scores: dict[int, float] = {}
    for j in range(n - 2, 0, -1):  # splitting node n + j leaves n - j clusters
        parent = n + j
        left, right = (int(c) for c in z[j, :2])
        small, large = (left, right) if sizes[left] <= sizes[right] else (right, left)
        sums[:, small] = distances[:, members[small]].sum(axis=1)
        sums[:, large] = sums[:, parent] - sums[:, small]
        node_of[members[left]] = left
        node_of[members[right]] = right
        active.remove(parent)
        active += [left, right]
        act = np.asarray(active)
        column[act] = np.arange(len(act))
        mean_to = sums[:, act] / sizes[act]  # [N, K] mean distance to each cluster's members
        own_size = sizes[node_of]
        own = column[node_of]
        a = sums[rows, node_of] / np.maximum(own_size - 1, 1)
        mean_to[rows, own] = np.inf
        b = mean_to.min(axis=1)
        denominator = np.maximum(a, b)
        s = np.where(denominator > 0, (b - a) / np.where(denominator > 0, denominator, 1), 0.0)
        s[own_size == 1] = 0.0
        scores[n - j] = float(s.mean())
    return scores


def select_num_clusters(identities: np.ndarray, seed: int = 0, partitions: Optional[WardPartitions] = None) -> dict:
    """K by the highest mean silhouette over K = 2..N-1 (partitions: the Ward hierarchy).

    Returns ``{"criterion", "scores", "excluded", "chosen"}``: ``scores`` maps ``str(K)`` to the
    silhouette, ``excluded`` gives the reason for each K that could not be scored.
    """
    x = np.asarray(identities, dtype=np.float64)
    n = len(x)
    if n == 1:
        return {"criterion": "silhouette", "scores": {}, "excluded": {}, "chosen": 1}
    partitions = partitions if partitions is not None else WardPartitions(x)
    scores = {str(k): score for k, score in ward_silhouettes(partitions).items()}
    excluded = {"1": "silhouette is undefined for one cluster", str(n): "silhouette is undefined with every agent alone"}
    chosen = int(max(scores, key=lambda k: (scores[k], -int(k)))) if scores else 1
    return {"criterion": "silhouette", "scores": scores, "excluded": excluded, "chosen": chosen}


#: ``(identities, seed, partitions) -> selection``: how K is chosen (benchmarks pass others);
#: ``partitions[k]`` is the candidate partition into k clusters.
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
        partitions = WardPartitions(identities)
        selection = select(identities, seed, partitions)
        labels = _refine(identities, partitions[selection["chosen"]], seed)
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


def _refine(identities: np.ndarray, labels: np.ndarray, seed: int) -> np.ndarray:
    """k-means started from the centres of ``labels`` (the AdaPS paper clusters by k-means)."""
    k = int(labels.max()) + 1
    if k in (1, len(identities)):
        return labels
    centres = np.stack([identities[labels == c].mean(axis=0) for c in range(k)])
    return kmeans(identities, k, seed, init=centres)


def _relabel_by_first_agent(labels: np.ndarray) -> np.ndarray:
    """Renumbers clusters in order of their first agent, so that labels are canonical."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.ravel()].astype(np.int64)
