"""Identity pre-training (SePS / AdaPS): a VAE encodes each agent, k-means groups them.

The encoder sees only the one-hot agent index, so its latent ``z`` can hold only what is
intrinsic to the agent (its reward function and dynamics); the decoder reconstructs the next
observation and the reward from ``z``, the observation and the action. Each agent's identity
vector is the encoder mean for its index. Usable without Ray: plain numpy in, numpy out.

Agents with different observation or action spaces (zero-padded to the largest size by the
training pipeline) are handled in two ways, see ``fit_identities``: the decoder never sees a
column that is padding for any agent, and agents with different spaces never share a cluster.
Observation features constant within each agent (an LBF agent's own level) are reconstructed by
the decoder but not read by it, so that only ``z`` can supply them (``VAEOptions.identity_leaks``).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from typing import Optional, Sequence

import numpy as np
import torch

from rllib_adaps.core.clustering import KSelector, cluster_identities, select_num_clusters
from rllib_adaps.core.options import SharingOptionError

logger = logging.getLogger(__name__)

RECONSTRUCT_TARGETS = ("next_obs", "reward")
IDENTITY_LEAK_MODES = ("reconstruct", "drop", "read")
DEFAULT_MIN_TRANSITIONS_PER_AGENT = 100
#: Minibatches per VAE epoch at most: a larger collection (many agents) gets larger batches,
#: so that the fit's time stops growing with the number of agents (see ``train_identity_vae``).
MAX_BATCHES_PER_EPOCH = 256


@dataclass(frozen=True)
class VAEOptions:
    """The identity VAE's settings (SePS's defaults where they exist, except ``lr``: see
    ``train_identity_vae``)."""

    z_dim: int = 10
    kl_weight: float = 1e-4
    epochs: int = 10
    batch_size: int = 128
    min_updates: int = 2_000  # at least this many gradient steps (small collections)
    lr: float = 1e-3
    reconstruct: Sequence[str] = RECONSTRUCT_TARGETS
    #: Per-agent constant observation features: reconstruct | drop | read (see fit_identities).
    identity_leaks: str = "reconstruct"

    def __post_init__(self):
        object.__setattr__(self, "reconstruct", tuple(self.reconstruct))
        for name in ("z_dim", "epochs", "batch_size", "min_updates"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise SharingOptionError(f"vae.{name} must be an int >= 1, got {getattr(self, name)!r}.")
        if not self.kl_weight >= 0 or not self.lr > 0:
            raise SharingOptionError(f"vae.kl_weight must be >= 0 and vae.lr > 0, got {self.kl_weight}, {self.lr}.")
        if not self.reconstruct or set(self.reconstruct) - set(RECONSTRUCT_TARGETS):
            raise SharingOptionError(f"vae.reconstruct must be a non-empty subset of {RECONSTRUCT_TARGETS}, got {list(self.reconstruct)}.")
        if self.identity_leaks not in IDENTITY_LEAK_MODES:
            raise SharingOptionError(f"vae.identity_leaks must be one of {IDENTITY_LEAK_MODES}, got {self.identity_leaks!r}.")


@dataclass
class IdentityResult:
    """The outcome of identity pre-training for ``N`` agents."""

    identities: np.ndarray  # [N, z_dim] encoder means
    labels: np.ndarray  # [N] cluster of each agent, 0..K-1
    centres: np.ndarray  # [K, z_dim] mean identity of each cluster
    num_clusters: int
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
    (a small collection otherwise leaves the encoder at its initialisation). An epoch has at
    most ``MAX_BATCHES_PER_EPOCH`` minibatches (larger ones than ``batch_size`` when there are
    more transitions): each agent's row of the encoder still sees all its transitions
    ``epochs`` times, while the number of updates, and so the time, stops growing with the
    number of agents. A batch k times larger takes an Adam step sqrt(k) times larger (the
    square-root scaling rule): without it the fewer updates moved the identities too little
    (BPS v4 at 3,000 env steps: ARI 0.87 against 1.00).

    Inputs and targets are standardised per dimension, the decoder predicts the change of the
    observation (``next_obs - obs``, equivalent information, easier to fit), and the squared
    errors are summed with the next observation counting as one quantity beside the reward
    (each of its dims weighs ``1/obs_dim``): otherwise many observation dims drown the reward,
    which is often the only thing that tells types apart. The default learning rate is 1e-3,
    not the SePS reference's 3e-4, which is tuned for about 200k env steps of transitions and
    leaves the identities unseparated on the few thousand collected here
    (``docs/results/identity_recovery_notes.txt``).

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
    ``blind_reward``: the blind pass also predicts the reward (measured, not a default:
    ``docs/results/identity_recovery_notes.txt``).
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
            weights.append(sample_real[:, own].astype(np.float64))  # each a whole quantity, as the reward
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
    if np.ndim(actions) == 2:  # continuous: the action vector itself
        action_in = torch.as_tensor(np.asarray(actions, np.float32))
    else:
        action_in = torch.nn.functional.one_hot(torch.as_tensor(actions, dtype=torch.int64).reshape(n), num_actions).float()
    out_dim = target.shape[1] + (profile.shape[1] if change_profile else 0)
    agents = torch.as_tensor(agent_index)
    torch_state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        vae = IdentityVAE(num_agents, obs_in.shape[1] + 1, num_actions, out_dim, z_dim)
        # foreach: one kernel per step for all tensors instead of a Python loop over them; the
        # same arithmetic (identities bitwise equal), about a third less time per update on CPU.
        grown = max(batch_size, int(np.ceil(n / MAX_BATCHES_PER_EPOCH)))
        lr, batch_size = lr * np.sqrt(grown / batch_size), grown  # square-root scaling for Adam
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



def _warn_if_leaks_tell_every_agent_apart(agent_index, obs, leaks, num_agents) -> None:
    """An agent id in the observation is a leak that differs for every agent: reconstructed, it
    makes every agent its own type. Genuine types (LBF levels) are shared by several agents."""
    first = np.unique(agent_index, return_index=True)[1]  # one row per agent (every agent has transitions here)
    if num_agents > 2 and len(np.unique(obs[first][:, leaks], axis=0)) == num_agents:
        logger.warning(
            "identity pre-training: %d observation feature(s) are constant within each agent and tell every agent apart "
            "(an agent id in the observation?). With vae.identity_leaks='reconstruct' they make every agent its own type; "
            "if they are ids, not types, set vae={'identity_leaks': 'drop'}.", int(leaks.sum()))


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
    vae: VAEOptions = VAEOptions(),
    seed: int = 0,
    obs_sizes: Optional[Sequence[int]] = None,
    action_sizes: Optional[Sequence[int]] = None,
    min_transitions_per_agent: int = DEFAULT_MIN_TRANSITIONS_PER_AGENT,
    select_k: KSelector = select_num_clusters,
    change_profile: bool = True,
    own_features: Optional[Sequence[int]] = None,
) -> IdentityResult:
    """Identity vectors and clusters of ``num_agents`` agents from their transitions.

    Args:
        agent_index: ``[T]`` index (0..N-1) of the agent of each transition.
        obs, next_obs: ``[T, obs_dim]`` observations before and after the step, zero-padded on
            the right to the largest agent's size.
        actions: ``[T]`` discrete actions (0..num_actions-1), or ``[T, num_actions]`` continuous
            ones on the engine's ``[-1, 1]`` scale (``num_actions``: the largest action size).
        rewards: ``[T]`` rewards.
        num_clusters: fixed K, or None to choose K by ``select_k`` (``core.clustering``).
        vae: the VAE's settings. ``vae.identity_leaks`` says what to do with observation
            features constant within every agent and different between agents
            (``identity_leak_features``; an LBF agent's own level):
            ``"reconstruct"`` (default): the decoder does not read them but reconstructs them,
            so the identity vector must carry them. A feature that never changes for an agent
            is a property of the agent; a decoder that reads it can copy it and needs no
            identity (``docs/results/cause_lbf_levels``).
            ``"drop"``: leave them out of input and target (for an env that shows each agent its
            own id: reconstructed, an id tells every agent apart; a warning says when leaks do).
            ``"read"``: ordinary decoder inputs (the SePS reference code).
        obs_sizes: per agent, the real observation size before padding (None: all equal).
            The decoder reads only columns that are real for every agent and reconstructs each
            agent's own real columns: padding cannot tell it agents apart.
        action_sizes: per agent, the number of actions (None: all ``num_actions``).
        own_features: observation columns that describe the agent itself, as the env declares
            them (``own_observation_features``: an LBF agent's own level); None: not declared.
            With ``identity_leaks="reconstruct"`` only these leaks are reconstructed and the
            other leaks are dropped: a per-agent constant that is not the agent's own (LBF
            shows the other agents' levels in index order) describes where the env put the
            agent among the others, so reconstructing it would make the identities depend on
            the agent order (``docs/results/identity_order.txt``).
        change_profile: also train the decoder to predict, without the observation, how much
            each observation feature changes after each action (see ``train_identity_vae``):
            needed where the observation reveals the type by itself (C-RWARE).
        min_transitions_per_agent: raise ``ValueError`` naming the agents with fewer
            transitions (``transitions_per_agent`` counts them; collect more and call again).

    Agents whose observation size or action count differ are never put in one cluster: a
    cluster shares one (sub-)network and is meant for agents with the same reward function
    and transition model, which agents with different spaces cannot have (a padded zero is
    not an observation, and action 4 of a 5-action agent does not exist for a 4-action one).
    The space is known exactly, so it is not left to the VAE: a cluster that mixes spaces is
    split by space (``k_selection["criterion"]`` then says so and ``chosen`` is the final K).
    """
    if not isinstance(vae, VAEOptions):
        raise TypeError(f"vae must be a VAEOptions, got {type(vae).__name__}.")
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
    acts = _action_inputs(actions, agent_index, num_actions, action_counts)
    start = time.perf_counter()
    groups = space_groups(num_agents, None if obs_sizes is None else sizes,
                          None if action_sizes is None else action_counts)
    leaks = identity_leak_features(agent_index, obs, next_obs)
    if leaks.all():
        leaks[:] = False  # nothing left to read: keep them all as inputs
    leak_count = int(leaks.sum())
    identity_columns = None
    dropped = leaks if vae.identity_leaks == "drop" else np.zeros_like(leaks)
    if leaks.any() and vae.identity_leaks == "reconstruct":
        if own_features is not None:
            own = np.zeros(width, bool)
            own[[c for c in own_features if 0 <= c < width]] = True
            dropped = leaks & ~own
            leaks = leaks & own
        _warn_if_leaks_tell_every_agent_apart(agent_index, obs, leaks, num_agents)
        identity_columns = leaks if leaks.any() else None
    if dropped.any():
        real = np.arange(width)[None, :] < sizes[:, None]
        sizes = (real & ~dropped[None, :]).sum(axis=1)  # a dropped column shortens every agent that has it
        keep = np.argsort(dropped, kind="stable")[: int((~dropped).sum())]  # kept columns first, in order
        obs, next_obs = obs[:, keep], next_obs[:, keep]
        if identity_columns is not None:
            identity_columns = identity_columns[keep]
    identities, loss = train_identity_vae(
        agent_index, obs, acts, next_obs, rewards,
        num_agents=num_agents, num_actions=num_actions, z_dim=vae.z_dim, kl_weight=vae.kl_weight,
        epochs=vae.epochs, batch_size=vae.batch_size, min_updates=vae.min_updates, lr=vae.lr,
        reconstruct=vae.reconstruct, seed=seed, obs_sizes=sizes, change_profile=change_profile,
        identity_columns=identity_columns,
    )
    clustering = cluster_identities(identities, num_clusters, seed, groups=groups, select=select_k)
    return IdentityResult(
        identities=identities,
        labels=clustering.labels,
        centres=clustering.centres,
        num_clusters=clustering.num_clusters,
        vae_loss=loss,
        fit_seconds=time.perf_counter() - start,
        identity_leaks=leak_count,
        k_selection=clustering.selection,
        space_groups=groups,
    )


def _action_inputs(actions, agent_index: np.ndarray, num_actions: int, action_counts: np.ndarray) -> np.ndarray:
    """Discrete actions as ``[T]`` ints (checked against each agent's count), or continuous ones
    (``[T, num_actions]``, the engine's ``[-1, 1]`` scale) clipped, with dims an agent lacks zeroed."""
    actions = np.asarray(actions)
    if actions.ndim == 2:
        if actions.shape != (len(agent_index), num_actions):
            raise ValueError(f"continuous actions must be [{len(agent_index)}, {num_actions}], got {list(actions.shape)}.")
        own = np.arange(num_actions)[None, :] < action_counts[agent_index][:, None]
        return np.where(own, np.clip(actions, -1.0, 1.0), 0.0).astype(np.float32)
    acts = actions.astype(np.int64).reshape(-1)
    if len(acts) != len(agent_index):
        raise ValueError(f"actions has {len(acts)} entries for {len(agent_index)} transitions.")
    if (acts < 0).any() or (acts >= action_counts[agent_index]).any():
        raise ValueError("actions must lie in 0..action_sizes[agent]-1 (0..num_actions-1).")
    return acts


def _per_agent(name: str, values: Optional[Sequence[int]], num_agents: int, low: int, high: int, default: int) -> np.ndarray:
    if values is None:
        return np.full(num_agents, default, dtype=np.int64)
    out = np.asarray(values, dtype=np.int64).reshape(-1)
    if len(out) != num_agents or (out < low).any() or (out > high).any():
        raise ValueError(f"{name} must give one size in [{low}, {high}] per agent ({num_agents}), got {list(values)}.")
    return out
