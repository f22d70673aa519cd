"""Identity pre-training (SePS / AdaPS): a VAE encodes each agent, k-means groups them.

The encoder sees only the one-hot agent index, so its latent ``z`` can hold only what is
intrinsic to the agent (its reward function and dynamics); the decoder reconstructs the next
observation and the reward from ``z``, the observation and the action. Each agent's identity
vector is the encoder mean for its index. Usable without Ray: plain numpy in, numpy out.

Agents with different observation or action spaces (zero-padded to the largest size by the
training pipeline) are handled in two ways, see ``fit_identities``: the decoder never sees a
column that is padding for any agent, and agents with different spaces never share a cluster.
Observation features constant within each agent (an LBF agent's own level) are reconstructed by
the decoder but not read by it, so that only ``z`` can supply them (``identity_leaks``).
"""

from __future__ import annotations

import logging
import time
import warnings
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch
from sklearn.cluster import KMeans
from sklearn.exceptions import ConvergenceWarning
from sklearn.metrics import davies_bouldin_score, silhouette_score

logger = logging.getLogger(__name__)

RECONSTRUCT_TARGETS = ("next_obs", "reward")
#: Criteria ``cluster_identities`` can choose K by (see ``select_num_clusters``).
K_CRITERIA = ("silhouette", "gap", "davies_bouldin", "davies_bouldin_floor", "bic")
DEFAULT_K_CRITERION = "silhouette"
DEFAULT_MIN_TRANSITIONS_PER_AGENT = 100


@dataclass
class IdentityResult:
    """The outcome of identity pre-training for ``N`` agents."""

    identities: np.ndarray  # [N, z_dim] encoder means
    labels: np.ndarray  # [N] cluster of each agent, 0..K-1
    centres: np.ndarray  # [K, z_dim] mean identity of each cluster
    num_clusters: int
    davies_bouldin: dict[int, float] = field(default_factory=dict)  # K -> score over 2..N-1 (auto K)
    vae_loss: float = float("nan")  # mean loss of the last epoch
    fit_seconds: float = 0.0
    identity_leaks: int = 0  # observation features constant within each agent, differing between agents (see fit_identities)
    # How K was chosen: {"criterion": str, "scores": {str(k): float}, "excluded": {str(k): reason},
    # "chosen": int}; with a fixed K, criterion "given" and no scores.
    k_selection: dict = field(default_factory=dict)
    space_groups: Optional[np.ndarray] = None  # [N] agents with equal (obs size, action size) share a number

    def cluster_sizes(self) -> list[int]:
        return np.bincount(self.labels, minlength=self.num_clusters).tolist()


class IdentityVAE(torch.nn.Module):
    """Encoder q(z | agent index) and decoder p(next obs, reward | z, obs, action).

    The encoder is a linear map of the one-hot index (a per-agent table of mean and
    log-variance) initialised to zero: agents start identical and move apart only along
    directions the decoder needs, so agents of one type end up close together instead of
    keeping random initial offsets in uninformative latent directions.
    """

    def __init__(self, num_agents: int, obs_dim: int, num_actions: int, out_dim: int, z_dim: int, hidden: int = 64):
        super().__init__()
        self.encoder = torch.nn.Embedding(num_agents, 2 * z_dim)
        torch.nn.init.zeros_(self.encoder.weight)
        self.decoder = torch.nn.Sequential(
            torch.nn.Linear(z_dim + obs_dim + num_actions, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, hidden),
            torch.nn.ReLU(),
            torch.nn.Linear(hidden, out_dim),
        )

    def encode(self, agent_index: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, log_var = self.encoder(agent_index).chunk(2, dim=-1)
        return mean, log_var.clamp(-10.0, 10.0)


def transitions_per_agent(agent_index: np.ndarray, num_agents: int) -> np.ndarray:
    """``[num_agents]`` number of transitions of each agent; raises on an index outside 0..N-1."""
    index = np.asarray(agent_index).ravel()
    if index.size and (not np.issubdtype(index.dtype, np.integer) and not np.all(index == np.round(index))):
        raise ValueError("agent_index must hold integer agent indices.")
    index = index.astype(np.int64)
    if index.size and (index.min() < 0 or index.max() >= num_agents):
        bad = sorted(set(index[(index < 0) | (index >= num_agents)].tolist()))
        raise ValueError(f"agent_index holds {bad}, outside 0..{num_agents - 1} (num_agents={num_agents}).")
    return np.bincount(index, minlength=num_agents)


def space_groups(num_agents: int, obs_sizes: Optional[Sequence[int]] = None,
                 action_sizes: Optional[Sequence[int]] = None) -> np.ndarray:
    """``[N]`` group number of each agent: agents share a number iff their observation size
    and action count are equal (groups numbered by first agent). All 0 when both are None."""
    keys = np.zeros((num_agents, 2), dtype=np.int64)
    if obs_sizes is not None:
        keys[:, 0] = obs_sizes
    if action_sizes is not None:
        keys[:, 1] = action_sizes
    _, first, inverse = np.unique(keys, axis=0, return_index=True, return_inverse=True)
    rank = np.argsort(np.argsort(first))  # renumber by first agent
    return rank[inverse.ravel()]


def _masked_standardise(x: np.ndarray, valid: np.ndarray) -> np.ndarray:
    """Standardises each column over its valid entries; invalid entries become 0."""
    count = np.maximum(valid.sum(axis=0), 1)
    mean = (x * valid).sum(axis=0) / count
    var = (((x - mean) * valid) ** 2).sum(axis=0) / count
    std = np.sqrt(var)
    return np.where(valid, (x - mean) / np.where(std > 1e-8, std, 1.0), 0.0)


def train_identity_vae(
    agent_index: np.ndarray,
    obs: np.ndarray,
    actions: np.ndarray,
    next_obs: np.ndarray,
    rewards: np.ndarray,
    *,
    num_agents: int,
    num_actions: int,
    z_dim: int = 10,
    kl_weight: float = 1e-4,
    epochs: int = 10,
    batch_size: int = 128,
    min_updates: int = 2_000,
    lr: float = 1e-3,
    reconstruct: Sequence[str] = RECONSTRUCT_TARGETS,
    seed: int = 0,
    obs_sizes: Optional[Sequence[int]] = None,
    change_profile: bool = False,
    blind_reward: bool = False,
    identity_columns: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, float]:
    """Trains the VAE; returns the ``[N, z_dim]`` identity vectors and the last epoch's loss.

    Runs ``epochs`` epochs, or more if that is needed to take ``min_updates`` gradient steps
    (a small collection otherwise leaves the encoder at its initialisation).

    Inputs and targets are standardised per dimension, the decoder predicts the change of the
    observation (``next_obs - obs``, equivalent information, easier to fit), and the squared
    errors are summed with the next observation counting as one quantity beside the reward
    (each of its dims weighs ``1/obs_dim``): otherwise many observation dims drown the reward,
    which is often the only thing that tells types apart (measured on BPS v2, 30 agents,
    50k random-policy transitions: adjusted Rand index 0.80 unweighted, see the tests).
    The default learning rate is 1e-3, not the SePS reference's 3e-4: the reference trains on
    ~200k env steps, and on 50k transitions 3e-4 left BPS v2 at ARI 0.70 and v4 at 0.52.

    ``obs_sizes`` (per agent, real size before zero padding): the decoder's input holds only
    the columns that are real for every agent (a padded column would tell agents apart, so
    the decoder would not need the identity), and each agent's reconstruction error covers
    its own real columns, weighed ``1/obs_sizes[i]`` each.

    ``change_profile``: the same decoder also predicts, from ``z`` and the action alone (the
    observation blanked, a flag input set), how much each observation feature changes
    (``|next_obs - obs|``), counted as one more quantity. When an agent's observation reveals
    its type by itself (C-RWARE: a per-colour permutation of the vector and a per-colour
    rotation of the action meanings), a decoder that reads the observation needs no identity;
    without the observation, which features an action moves is the type.
    ``identity_columns`` (``[obs_dim]`` bool): features the decoder does not read but
    reconstructs (their value, since they never change): only ``z`` can supply them.
    ``blind_reward``: the blind pass also predicts the reward (LBF, 5,000 random env steps,
    true K: ARI 0.78 against 0.59 without; not a default, since at 1,000 env steps it gave
    no gain and it was not measured on the other scenarios).
    """
    agent_index = np.asarray(agent_index, dtype=np.int64)
    n = len(agent_index)
    obs = np.asarray(obs, dtype=np.float32).reshape(n, -1)
    next_obs = np.asarray(next_obs, dtype=np.float32).reshape(n, -1)
    rewards = np.asarray(rewards, dtype=np.float32).reshape(n, 1)
    width = obs.shape[1]
    sizes = np.full(num_agents, width) if obs_sizes is None else np.minimum(np.asarray(obs_sizes, dtype=np.int64), width)
    real = np.arange(width)[None, :] < sizes[:, None]  # [N, width] column is real for the agent
    shared = real.all(axis=0)
    sample_real = real[agent_index]
    per_dim = sample_real / np.maximum(sizes[agent_index], 1)[:, None]
    own = np.zeros(width, bool) if identity_columns is None else np.asarray(identity_columns, bool)
    targets, weights = [], []
    if "next_obs" in reconstruct:
        targets.append(_masked_standardise(next_obs - obs, sample_real))
        weights.append(per_dim)
        if own.any():  # their change is 0: reconstruct their value, which only z can give
            targets.append(_masked_standardise(next_obs[:, own], sample_real[:, own]))
            weights.append(per_dim[:, own])
    if "reward" in reconstruct:
        targets.append(_masked_standardise(rewards, np.ones_like(rewards, dtype=bool)))
        weights.append(np.ones((n, 1)))
    target = torch.as_tensor(np.concatenate(targets, axis=1), dtype=torch.float32)
    weight = torch.as_tensor(np.concatenate(weights, axis=1), dtype=torch.float32)
    profile = profile_weight = None
    if change_profile:
        profile = _masked_standardise(np.abs(next_obs - obs), sample_real)
        profile_weight = per_dim
        if blind_reward:
            profile = np.concatenate([profile, _masked_standardise(rewards, np.ones_like(rewards, dtype=bool))], axis=1)
            profile_weight = np.concatenate([profile_weight, np.ones((n, 1))], axis=1)
        profile = torch.as_tensor(profile, dtype=torch.float32)
        profile_weight = torch.as_tensor(profile_weight, dtype=torch.float32)
    read = shared & ~own
    obs_in = torch.as_tensor(_masked_standardise(obs[:, read], np.ones((n, int(read.sum())), bool)), dtype=torch.float32)
    action_in = torch.nn.functional.one_hot(torch.as_tensor(actions, dtype=torch.int64).reshape(n), num_actions).float()
    out_dim = target.shape[1] + (profile.shape[1] if change_profile else 0)
    agents = torch.as_tensor(agent_index)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        vae = IdentityVAE(num_agents, obs_in.shape[1] + 1, num_actions, out_dim, z_dim)
        # foreach: one kernel per step for all tensors instead of a Python loop over them; the
        # same arithmetic (identities bitwise equal), about a third less time per update on CPU.
        optimizer = torch.optim.Adam(vae.parameters(), lr=lr, foreach=True)
        generator = torch.Generator().manual_seed(seed)
        last_epoch_loss = float("nan")
        batches_per_epoch = int(np.ceil(n / batch_size))
        split = target.shape[1]
        for _ in range(max(epochs, int(np.ceil(min_updates / batches_per_epoch)))):
            order = torch.randperm(n, generator=generator)
            total, count = 0.0, 0
            for start in range(0, n, batch_size):
                idx = order[start : start + batch_size]
                mean, log_var = vae.encode(agents[idx])
                z = mean + torch.randn(mean.shape, generator=generator) * torch.exp(0.5 * log_var)
                flag = torch.zeros(len(idx), 1)
                decoder_in = torch.cat([z, obs_in[idx], flag, action_in[idx]], dim=1)
                if change_profile:  # one decoder call for both: the blind rows follow the seeing ones
                    blind_in = torch.cat([z, torch.zeros_like(obs_in[idx]), flag + 1, action_in[idx]], dim=1)
                    decoder_in = torch.cat([decoder_in, blind_in])
                prediction = vae.decoder(decoder_in)
                seeing = prediction[: len(idx)]
                reconstruction = ((seeing[:, :split] - target[idx]).pow(2) * weight[idx]).sum(dim=1).mean()
                if change_profile:
                    blind = prediction[len(idx) :]
                    reconstruction = reconstruction + (
                        (blind[:, split:] - profile[idx]).pow(2) * profile_weight[idx]).sum(dim=1).mean()
                kl = -0.5 * (1 + log_var - mean.pow(2) - log_var.exp()).sum(dim=1).mean()
                loss = reconstruction + kl_weight * kl
                optimizer.zero_grad()
                loss.backward()
                optimizer.step()
                total += loss.item() * len(idx)
                count += len(idx)
            last_epoch_loss = total / max(count, 1)
        with torch.no_grad():
            identities = vae.encode(torch.arange(num_agents))[0].numpy().astype(np.float64)
    finally:
        torch.random.set_rng_state(torch_state)
    return identities, last_epoch_loss


# ----------------------------------------------------------------------------- choosing K
def _kmeans(identities: np.ndarray, k: int, seed: int) -> np.ndarray:
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
    return {k: _kmeans(identities, k, seed) for k in range(1, len(identities) + 1)}


def _scatter(identities: np.ndarray, labels: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Per cluster: centre, mean distance to it, mean squared distance to it."""
    counts = np.bincount(labels, minlength=k)
    centres = np.zeros((k, identities.shape[1]))
    np.add.at(centres, labels, identities)
    centres /= np.maximum(counts, 1)[:, None]
    dist = np.linalg.norm(identities - centres[labels], axis=1)
    mean_dist = np.bincount(labels, weights=dist, minlength=k) / np.maximum(counts, 1)
    mean_sq = np.bincount(labels, weights=dist**2, minlength=k) / np.maximum(counts, 1)
    return centres, mean_dist, mean_sq


def _davies_bouldin_floor(identities: np.ndarray, labels: np.ndarray, k: int) -> float:
    """Davies-Bouldin with each one-agent cluster credited the median scatter of the others."""
    counts = np.bincount(labels, minlength=k)
    centres, scatter, _ = _scatter(identities, labels, k)
    scatter = np.where(counts > 1, scatter, np.median(scatter[counts > 1]))
    separation = np.linalg.norm(centres[:, None] - centres[None], axis=2)
    np.fill_diagonal(separation, np.inf)
    return float(np.mean(np.max((scatter[:, None] + scatter[None]) / np.maximum(separation, 1e-12), axis=1)))


def _log_within_dispersion(x: np.ndarray, labels: np.ndarray, k: int) -> float:
    _, _, mean_sq = _scatter(x, labels, k)
    counts = np.bincount(labels, minlength=k)
    return float(np.log(max((mean_sq * counts).sum() / 2.0, 1e-300)))


def select_num_clusters(
    identities: np.ndarray,
    criterion: str = DEFAULT_K_CRITERION,
    seed: int = 0,
    labels_of: Optional[dict[int, np.ndarray]] = None,
) -> dict:
    """Chooses K for ``identities`` [N, z]; returns ``{"criterion", "scores", "excluded", "chosen"}``.

    Candidates are K = 1..N where the criterion can score them; ``scores`` maps ``str(K)`` to
    the criterion's value and ``excluded`` gives the reason for each K it could not score.

    - ``davies_bouldin``: lowest index over K = 2..N-1 among clusterings without one-agent
      clusters (the package's earlier rule: the plain index drifts to K = N-1).
    - ``davies_bouldin_floor``: lowest index over K = 2..N-1, a one-agent cluster credited the
      median scatter of the clustering's other clusters.
    - ``silhouette`` (default): highest mean silhouette over K = 2..N-1. A one-agent cluster
      scores 0 for its agent but lifts every other agent's score when the agent is far from
      the rest, so a role held by one agent is kept alone; splitting a tight type lowers the
      score of its agents, so K does not drift to N-1. Measured on 8 scenarios x 5 seeds of
      random-policy transitions (``docs/results/identity_recovery_k_criteria.txt``): mean ARI
      0.89 against 0.92 with the true K given, gap 0.75, davies_bouldin 0.83,
      davies_bouldin_floor 0.79, bic 0.13. Limits: it cannot choose K = 1, and it may merge
      small types next to large ones (BPS v4, 3,3,3,12,9: K=3 in 3 of 5 seeds).
    - ``gap``: Tibshirani's gap statistic over K = 1..N-1 (20 uniform references in the
      principal-axes box): the smallest K with gap(K) >= gap(K+1) - s(K+1).
    - ``bic``: spherical Gaussian mixture with a shared variance fitted by k-means, lowest BIC
      over K = 1..N-1.
    """
    x = np.asarray(identities, dtype=np.float64)
    n = len(x)
    if criterion not in K_CRITERIA:
        raise ValueError(f"Unknown K criterion {criterion!r}; choose one of {K_CRITERIA}.")
    scores: dict[str, float] = {}
    excluded: dict[str, str] = {}
    if n == 1:
        return {"criterion": criterion, "scores": {}, "excluded": {}, "chosen": 1}
    labels_of = labels_of if labels_of is not None else kmeans_path(x, seed)
    ks_inner = range(2, n)
    if criterion in ("davies_bouldin", "davies_bouldin_floor", "silhouette"):
        excluded["1"] = f"{criterion} is undefined for one cluster"
        excluded[str(n)] = f"{criterion} is undefined with every agent alone"
        for k in ks_inner:
            labels = labels_of[k]
            if len(np.unique(labels)) < 2:
                excluded[str(k)] = "k-means found fewer than 2 clusters"
                continue
            if criterion == "davies_bouldin":
                if np.bincount(labels).min() < 2:
                    excluded[str(k)] = "has a one-agent cluster"
                    continue
                scores[str(k)] = float(davies_bouldin_score(x, labels))
            elif criterion == "davies_bouldin_floor":
                scores[str(k)] = _davies_bouldin_floor(x, labels, k)
            else:
                scores[str(k)] = float(silhouette_score(x, labels))
        if not scores:
            chosen = 1
        elif criterion == "silhouette":
            chosen = int(max(scores, key=scores.get))
        else:
            chosen = int(min(scores, key=scores.get))
    elif criterion == "gap":
        rng = np.random.default_rng(seed)
        centred = x - x.mean(axis=0)
        _, _, vt = np.linalg.svd(centred, full_matrices=False)
        projected = centred @ vt.T
        low, high = projected.min(axis=0), projected.max(axis=0)
        references = [rng.uniform(low, high, size=projected.shape) for _ in range(20)]
        gap, spread = {}, {}
        for k in range(1, n):
            observed = _log_within_dispersion(projected, labels_of[k], k)
            ref = np.array([_log_within_dispersion(r, _kmeans(r, k, seed), k) for r in references])
            gap[k] = float(ref.mean() - observed)
            spread[k] = float(ref.std() * np.sqrt(1 + 1 / len(references)))
            scores[str(k)] = gap[k]
        excluded[str(n)] = "gap is undefined with every agent alone"
        chosen = next((k for k in range(1, n - 1) if gap[k] >= gap[k + 1] - spread[k + 1]), n - 1)
    else:  # bic
        d = x.shape[1]
        for k in range(1, n):
            labels = labels_of[k]
            counts = np.bincount(labels, minlength=k)
            _, _, mean_sq = _scatter(x, labels, k)
            variance = max(float((mean_sq * counts).sum()) / (n * d), 1e-300)
            log_likelihood = -0.5 * n * d * (np.log(2 * np.pi * variance) + 1) + float(
                np.sum(counts[counts > 0] * np.log(counts[counts > 0] / n)))
            parameters = k * d + 1 + (k - 1)
            scores[str(k)] = float(-2 * log_likelihood + parameters * np.log(n))
        excluded[str(n)] = "bic is undefined with every agent alone (zero variance)"
        chosen = int(min(scores, key=scores.get))
    return {"criterion": criterion, "scores": scores, "excluded": excluded, "chosen": int(chosen)}


def cluster_identities(
    identities: np.ndarray,
    num_clusters: int | None = None,
    seed: int = 0,
    *,
    criterion: str = DEFAULT_K_CRITERION,
    groups: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray, int, dict[int, float]]:
    """k-means (k-means++, 10 restarts) on identity vectors; returns labels, centres, K and
    the Davies-Bouldin index of every K in 2..N-1 (empty with a fixed K).

    With ``num_clusters=None`` K is chosen by ``criterion`` (see ``select_num_clusters``;
    ``fit_identities`` uses ``silhouette``). ``groups`` ([N] ints): agents of different
    groups never share a cluster; a cluster that mixes groups is split by group, so K can end
    up larger than the k-means K (``cluster_identities_with_selection`` reports the choice).
    """
    labels, centres, k, scores, _ = cluster_identities_with_selection(
        identities, num_clusters, seed, criterion=criterion, groups=groups)
    return labels, centres, k, scores


def cluster_identities_with_selection(
    identities: np.ndarray,
    num_clusters: int | None = None,
    seed: int = 0,
    *,
    criterion: str = DEFAULT_K_CRITERION,
    groups: Optional[np.ndarray] = None,
) -> tuple[np.ndarray, np.ndarray, int, dict[int, float], dict]:
    """``cluster_identities`` plus the K-selection record (``IdentityResult.k_selection``)."""
    identities = np.asarray(identities, dtype=np.float64)
    n = len(identities)
    db: dict[int, float] = {}
    if num_clusters is None:
        if n < 3:
            raise ValueError(
                f"Choosing K automatically needs at least 3 agents, got N={n}; set num_clusters explicitly."
            )
        labels_of = kmeans_path(identities, seed)
        for k in range(2, n):
            if len(np.unique(labels_of[k])) >= 2:
                db[k] = float(davies_bouldin_score(identities, labels_of[k]))
        selection = select_num_clusters(identities, criterion, seed, labels_of)
        k = selection["chosen"]
        labels = labels_of[k]
    else:
        if not 1 <= num_clusters <= n:
            raise ValueError(f"num_clusters must be in [1, {n}] (number of agents), got {num_clusters}.")
        k = num_clusters
        selection = {"criterion": "given", "scores": {}, "excluded": {}, "chosen": k}
        labels = _kmeans(identities, k, seed)
    if groups is not None:
        groups = np.asarray(groups, dtype=np.int64)
        _, labels = np.unique(np.stack([labels, groups], axis=1), axis=0, return_inverse=True)
        labels = labels.ravel()
        if len(np.unique(labels)) != k:
            selection = dict(selection, criterion=selection["criterion"] + " + split by observation/action space",
                             chosen=int(len(np.unique(labels))))
    labels = _relabel_by_first_agent(labels)
    k = int(labels.max()) + 1
    centres = np.stack([identities[labels == c].mean(axis=0) for c in range(k)])
    return labels, centres, k, db, selection


def _relabel_by_first_agent(labels: np.ndarray) -> np.ndarray:
    """Renumbers clusters in order of their first agent, so that labels are canonical."""
    _, first, inverse = np.unique(labels, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first))[inverse.ravel()].astype(np.int64)


def identity_leak_features(agent_index: np.ndarray, obs: np.ndarray, next_obs: np.ndarray, atol: float = 1e-6) -> np.ndarray:
    """``[obs_dim]`` bool: features constant within every agent that differ between agents.

    Such a feature (an agent's own LBF level) is an identity in itself: a decoder that reads it
    can predict each agent's transitions without the identity vector, and the identities then
    stay uninformative.
    """
    agent_index = np.asarray(agent_index, dtype=np.int64)
    values = np.concatenate([np.asarray(obs), np.asarray(next_obs)]).reshape(2 * len(agent_index), -1)
    index = np.concatenate([agent_index, agent_index])
    num_agents = int(index.max()) + 1
    low = np.full((num_agents, values.shape[1]), np.inf)
    high = np.full((num_agents, values.shape[1]), -np.inf)
    np.minimum.at(low, index, values)
    np.maximum.at(high, index, values)
    seen = np.isfinite(low[:, 0])
    low, high = low[seen], high[seen]
    constant_within = (high - low <= atol).all(axis=0)
    differs_between = low.max(axis=0) - low.min(axis=0) > atol
    return constant_within & differs_between


IDENTITY_LEAK_MODES = ("reconstruct", "drop", "read")


def _warn_if_leaks_tell_every_agent_apart(agent_index, obs, leaks, num_agents) -> None:
    """An agent id in the observation is a leak that differs for every agent: reconstructed, it
    makes every agent its own type. Genuine types (LBF levels) are shared by several agents."""
    first = np.unique(agent_index, return_index=True)[1]  # one row per agent (every agent has transitions here)
    if num_agents > 2 and len(np.unique(obs[first][:, leaks], axis=0)) == num_agents:
        logger.warning(
            "identity pre-training: %d observation feature(s) are constant within each agent and tell every agent apart "
            "(an agent id in the observation?). With identity_leaks='reconstruct' they make every agent its own type; "
            "if they are ids, not types, set identity_leaks='drop'.", int(leaks.sum()))


def fit_identities(
    agent_index: np.ndarray,
    obs: np.ndarray,
    actions: np.ndarray,
    next_obs: np.ndarray,
    rewards: np.ndarray,
    *,
    num_agents: int,
    num_actions: int,
    num_clusters: int | None = None,
    z_dim: int = 10,
    kl_weight: float = 1e-4,
    epochs: int = 10,
    batch_size: int = 128,
    min_updates: int = 2_000,
    lr: float = 1e-3,
    reconstruct: Sequence[str] = RECONSTRUCT_TARGETS,
    identity_leaks: str = "reconstruct",
    seed: int = 0,
    obs_sizes: Optional[Sequence[int]] = None,
    action_sizes: Optional[Sequence[int]] = None,
    min_transitions_per_agent: int = DEFAULT_MIN_TRANSITIONS_PER_AGENT,
    k_criterion: str = DEFAULT_K_CRITERION,
    change_profile: bool = True,
) -> IdentityResult:
    """Identity vectors and clusters of ``num_agents`` agents from their transitions.

    Args:
        agent_index: ``[T]`` index (0..N-1) of the agent of each transition.
        obs, next_obs: ``[T, obs_dim]`` observations before and after the step, zero-padded on
            the right to the largest agent's size.
        actions: ``[T]`` discrete actions (0..num_actions-1).
        rewards: ``[T]`` rewards.
        num_clusters: fixed K, or None to choose K by ``k_criterion`` (see
            ``select_num_clusters``; the default is the highest mean silhouette over
            K = 2..N-1, which can keep a one-agent cluster and does not drift to K = N-1;
            measured against gap, BIC and Davies-Bouldin with and without a scatter floor in
            ``docs/results/identity_recovery_k_criteria.txt``).
        min_updates: train for more than ``epochs`` if needed to take this many steps.
        reconstruct: which of ``("next_obs", "reward")`` the decoder reconstructs.
        identity_leaks: what to do with observation features that are constant within every
            agent and differ between agents (``identity_leak_features``; an LBF agent's own
            level and, with persistent levels, the others' levels in its fixed order):
            ``"reconstruct"`` (default): the decoder does not read them but reconstructs them,
            so the identity vector must carry them. A feature that never changes for an agent
            is a property of the agent, part of its transition model; a decoder that reads it
            can copy it and needs no identity. Measured on LBF (levels 1,1,2,2,3,3), 3,000
            random env steps, 5 seeds, K chosen automatically: mean ARI 1.00 (K=3 in every
            seed) against 0.23 with ``"drop"``.
            ``"drop"``: leave them out of input and target (for an env that shows each agent its
            own id: reconstructed, an id tells every agent apart; a warning says when leaks do).
            ``"read"``: ordinary decoder inputs (the SePS reference code).
        obs_sizes: per agent, the real observation size before padding (None: all equal).
            The decoder reads only columns that are real for every agent and reconstructs each
            agent's own real columns: padding cannot tell it agents apart.
        action_sizes: per agent, the number of actions (None: all ``num_actions``).
        change_profile: also train the decoder to predict, without the observation, how much
            each observation feature changes after each action (see ``train_identity_vae``).
            Needed where the observation reveals the type by itself (C-RWARE).
        min_transitions_per_agent: raise ``ValueError`` naming the agents with fewer
            transitions (``transitions_per_agent`` counts them; collect more and call again).

    Agents whose observation size or action count differ are never put in one cluster: a
    cluster shares one (sub-)network and is meant for agents with the same reward function
    and transition model, and agents with different spaces cannot have the same transition
    model (their states and actions are different sets: a padded zero is not an observation,
    and action 4 of a 5-action agent does not exist for a 4-action one). Their identities
    are also not comparable on the columns the decoder cannot read. The space is known
    exactly, so it is not left to the VAE: a cluster that mixes spaces is split by space
    (``k_selection["criterion"]`` then says so and ``chosen`` is the final K).
    """
    if z_dim < 1:
        raise ValueError(f"z_dim must be >= 1, got {z_dim}.")
    if kl_weight < 0:
        raise ValueError(f"kl_weight must be >= 0, got {kl_weight}.")
    if epochs < 1 or batch_size < 1 or lr <= 0:
        raise ValueError(f"epochs, batch_size and lr must be positive, got {epochs}, {batch_size}, {lr}.")
    unknown = set(reconstruct) - set(RECONSTRUCT_TARGETS)
    if not reconstruct or unknown:
        raise ValueError(f"reconstruct must be a non-empty subset of {RECONSTRUCT_TARGETS}, got {list(reconstruct)}.")
    if identity_leaks not in IDENTITY_LEAK_MODES:
        raise ValueError(f"identity_leaks must be one of {IDENTITY_LEAK_MODES}, got {identity_leaks!r}.")
    if k_criterion not in K_CRITERIA:
        raise ValueError(f"k_criterion must be one of {K_CRITERIA}, got {k_criterion!r}.")
    if min_transitions_per_agent < 1:
        raise ValueError(f"min_transitions_per_agent must be >= 1, got {min_transitions_per_agent}.")
    agent_index = np.asarray(agent_index, dtype=np.int64)
    if len(agent_index) == 0:
        raise ValueError("fit_identities needs at least one transition.")
    counts = transitions_per_agent(agent_index, num_agents)
    short = np.flatnonzero(counts < min_transitions_per_agent)
    if len(short):
        missing = np.flatnonzero(counts == 0).tolist()
        raise ValueError(
            f"Too few transitions for identity pre-training: agents {short.tolist()} have "
            f"{counts[short].tolist()} (at least {min_transitions_per_agent} each are needed; "
            f"missing {missing}). Collect more env steps, or lower min_transitions_per_agent."
        )
    obs = np.asarray(obs, dtype=np.float32).reshape(len(agent_index), -1)
    next_obs = np.asarray(next_obs, dtype=np.float32).reshape(len(agent_index), -1)
    width = obs.shape[1]
    sizes = _per_agent("obs_sizes", obs_sizes, num_agents, 1, width, width)
    action_counts = _per_agent("action_sizes", action_sizes, num_agents, 1, num_actions, num_actions)
    acts = np.asarray(actions, dtype=np.int64).reshape(-1)
    if len(acts) != len(agent_index):
        raise ValueError(f"actions has {len(acts)} entries for {len(agent_index)} transitions.")
    if (acts < 0).any() or (acts >= action_counts[agent_index]).any():
        raise ValueError("actions must lie in 0..action_sizes[agent]-1 (0..num_actions-1).")
    start = time.perf_counter()
    groups = space_groups(num_agents, None if obs_sizes is None else sizes,
                          None if action_sizes is None else action_counts)
    leaks = identity_leak_features(agent_index, obs, next_obs)
    if leaks.all():
        leaks[:] = False  # nothing left to read: keep them all as inputs
    identity_columns = None
    if leaks.any() and identity_leaks == "reconstruct":
        _warn_if_leaks_tell_every_agent_apart(agent_index, obs, leaks, num_agents)
        identity_columns = leaks
    elif leaks.any() and identity_leaks == "drop":
        real = np.arange(width)[None, :] < sizes[:, None]
        sizes = (real & ~leaks[None, :]).sum(axis=1)  # a dropped column shortens every agent that has it
        keep = np.argsort(leaks, kind="stable")[: int((~leaks).sum())]  # kept columns first, in order
        obs, next_obs = obs[:, keep], next_obs[:, keep]
    identities, loss = train_identity_vae(
        agent_index, obs, acts, next_obs, rewards,
        num_agents=num_agents, num_actions=num_actions, z_dim=z_dim, kl_weight=kl_weight,
        epochs=epochs, batch_size=batch_size, min_updates=min_updates, lr=lr, reconstruct=reconstruct, seed=seed,
        obs_sizes=sizes, change_profile=change_profile, identity_columns=identity_columns,
    )
    labels, centres, k, db, selection = cluster_identities_with_selection(
        identities, num_clusters, seed, criterion=k_criterion, groups=groups)
    return IdentityResult(
        identities=identities,
        labels=labels,
        centres=centres,
        num_clusters=k,
        davies_bouldin=db,
        vae_loss=loss,
        fit_seconds=time.perf_counter() - start,
        identity_leaks=int(leaks.sum()),
        k_selection=selection,
        space_groups=groups,
    )


def _per_agent(name: str, values: Optional[Sequence[int]], num_agents: int, low: int, high: int, default: int) -> np.ndarray:
    if values is None:
        return np.full(num_agents, default, dtype=np.int64)
    out = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(out) != num_agents or (out < low).any() or (out > high).any():
        raise ValueError(f"{name} must give one size in [{low}, {high}] per agent ({num_agents}), got {list(values)}.")
    return out
