"""The fast path: a parallel multi-agent env as a vector of per-agent slots on RLlib's
single-agent EnvRunner.

RLlib's ``MultiAgentEnvRunner`` spends about 110 us of bookkeeping per agent step (dicts per
agent, ``MultiAgentEpisode``, agent-to-module mapping) where our envs need about 1 us. Every
agent of a sharing run maps to the one engine module anyway, and the engine reads the agent
from the observation's last column, so an env copy whose agents all act every step can be
shown to RLlib as N independent sub-envs ("slots") of a ``gymnasium.vector.VectorEnv``,
sampled by RLlib's leaner ``SingleAgentEnvRunner``:

- ``SlotVectorEnv``: ``E`` copies of a multi-agent env with ``N`` agents as ``E * N``
  sub-envs; sub-env ``c * N + i`` is agent ``i`` (the module's row ``i``) of copy ``c``.
  This package's envs are ``BatchedEnv``s (``rllib_adaps.envs.batched``) and step all copies
  in one array call; any other PettingZoo ``ParallelEnv`` runs as ``ParallelEnvCopies``, one
  ``step()`` per copy. Observations have the layout of the multi-agent path's
  ``AgentIndexObservations``: zero-padded to the largest observation size, then the columns
  of a centralised critic (``critic_input``: the env's ``state()`` or every agent's
  observation), then the agent index as a float. Discrete actions: ``Discrete(largest)`` per
  slot (the batched ``action_space`` is a ``MultiDiscrete`` with each agent's own size, so
  random actions stay valid); the module masks the logits of actions an agent lacks, as on the
  multi-agent path. Box actions: ``Box(-1, 1, (largest,))`` per slot, each agent's own dims
  scaled to its bounds in one array operation (``ContinuousActions``).
  All slots of a copy end together and are reset together on the next ``step()``
  (gymnasium's next-step autoreset, which RLlib's EnvRunner expects).
- ``FastPathEnvRunner``: RLlib's ``SingleAgentEnvRunner`` with budgets and metrics in env
  steps of the parallel env, so a config means the same on both paths:
  ``sample(num_timesteps=T)`` samples ``T`` env steps (``T * N`` slot steps),
  ``sample(num_episodes=K)`` ``K`` env episodes; ``num_env_steps_sampled`` (and so
  ``train_batch_size_per_learner``, stop criteria on ``num_env_steps_sampled_lifetime`` and
  the pre-training schedule) counts env steps; ``num_envs_per_env_runner`` counts env copies;
  the train batch holds ``N`` rows per env step and ``minibatch_size`` is in rows, exactly as
  on the multi-agent path. ``episode_return_mean`` is the sum over agents per env episode,
  ``agent_episode_returns_mean`` the per-agent returns (as RLlib's multi-agent runner logs
  them).

``configure_sharing`` chooses this path by itself when the env allows it
(``fast_path_problem``), and ``fast_path=False`` turns it off. On this path the module id is
RLlib's single-agent ``default_policy`` (``rllib_adaps.rllib.module_ids``). RLlib's per-episode
callbacks (``on_episode_start/step/end``) see one ``SingleAgentEpisode`` per agent slot; its
``custom_data`` names the agent (``agent_id``, ``agent_index``), the env copy (``env_index``)
and the env episode (``env_episode_id``).

SuperSuit's conversion (``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1``) was measured
as the alternative before writing ``SlotVectorEnv`` (``bench/fast_path_speed.py --env-only``,
``docs/results/fast_path_speed.txt``): slower on all three envs. It also
resets a finished env in the same ``step()`` (the final observation only in ``infos``), which
RLlib's single-agent EnvRunner does not expect, and has neither padding nor the agent index.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import operator
import time
from collections import defaultdict
from typing import Any, Callable, Dict, List, Optional, Sequence

import gymnasium as gym
import numpy as np
import torch
from gymnasium.vector import AutoresetMode
from gymnasium.vector.utils import batch_space
from gymnasium.wrappers.vector import DictInfoToList
from pettingzoo import ParallelEnv
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.callbacks.utils import make_callback
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.connectors.module_to_env.get_actions import GetActions
from ray.rllib.core.columns import Columns
from ray.rllib.env.env_context import EnvContext
from ray.rllib.env.env_runner import ENV_STEP_FAILURE
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
from ray.rllib.utils.metrics import (
    ENV_TO_MODULE_CONNECTOR,
    MODULE_TO_ENV_CONNECTOR,
    RLMODULE_INFERENCE_TIMER,
    SAMPLE_TIMER,
    WEIGHTS_SEQ_NO,
    EPISODE_AGENT_RETURN_MEAN,
    EPISODE_AGENT_STEPS,
    EPISODE_DURATION_SEC_MEAN,
    EPISODE_LEN_MAX,
    EPISODE_LEN_MEAN,
    EPISODE_LEN_MIN,
    EPISODE_MODULE_RETURN_MEAN,
    EPISODE_RETURN_MAX,
    EPISODE_RETURN_MEAN,
    EPISODE_RETURN_MIN,
    NUM_AGENT_STEPS_SAMPLED,
    NUM_AGENT_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_SAMPLED,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_EPISODES,
    NUM_EPISODES_LIFETIME,
    NUM_MODULE_STEPS_SAMPLED,
    NUM_MODULE_STEPS_SAMPLED_LIFETIME,
)
from ray.tune.registry import ENV_CREATOR, _global_registry

from rllib_adaps.envs.batched import BatchedEnv, BatchedParallelEnv
from rllib_adaps.rllib.connectors import ContinuousActions, joint_observation_space, padded_index_space
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID
from rllib_adaps.rllib.shims import log_values

logger = logging.getLogger("rllib_adaps")
EPISODE_HOOKS = ("on_episode_created", "on_episode_start", "on_episode_step", "on_episode_end")


class FastPathError(RuntimeError):
    """The env broke the fast path's assumption (every agent acts every step until all end)."""


# --------------------------------------------------------------------------- the env
def parallel_env_of(env: Any) -> Optional[ParallelEnv]:
    """The PettingZoo ``ParallelEnv`` an env is or wraps unchanged, else None.

    Only the plain wrappers are looked through (this package's ``OrderedParallelEnv`` and
    RLlib's ``ParallelPettingZooEnv``): a subclass of them may change observations or rewards,
    which the fast path, stepping the ``ParallelEnv`` itself, would bypass.
    """
    from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

    from rllib_adaps.envs.rllib_env import OrderedParallelEnv

    if isinstance(env, ParallelEnv):
        return env
    if type(env) in (OrderedParallelEnv, ParallelPettingZooEnv) and isinstance(getattr(env, "par_env", None), ParallelEnv):
        return env.par_env
    return None


def _getter(keys: Sequence[str]) -> Callable[[dict], tuple]:
    """``itemgetter`` that always returns a tuple (one C call for all keys, in order)."""
    if len(keys) == 1:
        key = keys[0]
        return lambda d: (d[key],)
    return operator.itemgetter(*keys)


class ParallelEnvCopies(BatchedEnv):
    """Copies of any PettingZoo ``ParallelEnv`` behind the ``BatchedEnv`` interface.

    The general route, for envs that cannot step their copies at once (third-party envs):
    one ``step()`` per copy. Observations are zero-padded to the largest size; agents are
    ``agent_ids`` in that order. An agent that ends alone, or an observation missing for an
    agent, is a ``FastPathError`` (such envs need the multi-agent path).
    """

    def __init__(self, envs: Sequence[ParallelEnv], agent_ids: Optional[Sequence[str]] = None):
        if not envs:
            raise ValueError("SlotVectorEnv needs at least one env copy.")
        self.envs: List[ParallelEnv] = list(envs)
        first = self.envs[0]
        self.name = type(first.unwrapped).__name__
        self.possible_agents = list(agent_ids if agent_ids is not None else first.possible_agents)
        self.num_copies = len(self.envs)
        self.num_agents = len(self.possible_agents)
        self.true_agent_types = getattr(first.unwrapped, "true_agent_types", None)
        self.own_observation_features = getattr(first.unwrapped, "own_observation_features", None)
        sizes = [int(first.observation_space(a).shape[0]) for a in self.possible_agents]
        self._all = _getter(self.possible_agents)
        # One (getter, rows, size) per distinct observation size: one stacked write each.
        by_size: Dict[int, List[int]] = defaultdict(list)
        for i, size in enumerate(sizes):
            by_size[size].append(i)
        self._obs_groups = [(_getter([self.possible_agents[i] for i in rows]), np.asarray(rows), size)
                            for size, rows in by_size.items()]
        shape = (self.num_copies, self.num_agents)
        self._obs = np.zeros((*shape, max(sizes)), np.float32)
        self._infos: List[dict] = [{} for _ in self.envs]
        self.state_space = getattr(first, "state_space", None) if callable(getattr(first, "state", None)) else None
        action_spaces = [first.action_space(a) for a in self.possible_agents]
        dims = [int(s.shape[0]) for s in action_spaces if isinstance(s, gym.spaces.Box)]
        #: Box actions of unequal sizes: each agent's own dims of the padded action row.
        self._action_dims = dims if dims and len(set(dims)) > 1 else None

    def states(self) -> np.ndarray:
        if self.state_space is None:
            return super().states()
        return np.stack([np.asarray(env.state(), np.float32).ravel() for env in self.envs])

    def observation_space(self, agent: str) -> gym.Space:
        return self.envs[0].observation_space(agent)

    def action_space(self, agent: str) -> gym.Space:
        return self.envs[0].action_space(agent)

    def _write_obs(self, copy: int, observations: dict) -> None:
        if len(observations) != self.num_agents:
            missing = sorted(set(self.possible_agents) - set(observations))
            raise FastPathError(
                f"The env returned observations for {len(observations)} of its {self.num_agents} agents (missing: "
                f"{missing[:5]}); the fast path needs every agent to act every step. Use configure_sharing(..., "
                "fast_path=False) for envs whose agents come and go or act in turns."
            )
        row = self._obs[copy]
        for getter, rows, size in self._obs_groups:
            row[rows, :size] = getter(observations)

    def reset_copies(self, copies, seeds) -> None:
        for copy, seed in zip(np.asarray(copies).tolist(), seeds):
            observations, self._infos[copy] = self.envs[copy].reset(seed=seed)
            self._write_obs(copy, observations)

    def step_copies(self, actions, active):
        rewards = np.zeros((self.num_copies, self.num_agents))
        terminated = np.zeros((self.num_copies, self.num_agents), bool)
        truncated = np.zeros((self.num_copies, self.num_agents), bool)
        for copy in np.flatnonzero(active).tolist():
            env = self.envs[copy]
            row = actions[copy] if self._action_dims is None else [a[:d] for a, d in zip(actions[copy], self._action_dims)]
            observations, rewards_c, term_c, trunc_c, self._infos[copy] = env.step(dict(zip(self.possible_agents, row)))
            try:
                rewards[copy], terminated[copy], truncated[copy] = self._all(rewards_c), self._all(term_c), self._all(trunc_c)
            except KeyError as missing:
                raise FastPathError(
                    f"The env returned no reward or end flag for agent {missing}; the fast path needs every agent to "
                    "act every step. Use configure_sharing(..., fast_path=False) for this env."
                ) from None
            self._write_obs(copy, observations)
        ended = terminated | truncated
        any_ended, all_ended = ended.any(axis=1), ended.all(axis=1)
        if (any_ended != all_ended).any():
            copy = int(np.argmax(any_ended != all_ended))
            gone = [a for a, e in zip(self.possible_agents, ended[copy]) if e]
            raise FastPathError(
                f"Agents {gone[:5]} ended their episode while others went on; the fast path needs all agents of an env to "
                "end together. Use configure_sharing(..., fast_path=False) for envs whose agents come and go."
            )
        return rewards, terminated, truncated

    def observations(self) -> np.ndarray:
        return self._obs

    def infos(self) -> List[dict]:
        return self._infos

    def close(self) -> None:
        for env in self.envs:
            env.close()


class SlotVectorEnv(gym.vector.VectorEnv):
    """``E`` copies of a multi-agent env with ``N`` agents as one vector env of ``E * N`` slots.

    Built on a ``BatchedEnv`` (all copies stepped in one call, as this package's envs do) or
    on a list of ``ParallelEnv`` copies (stepped one by one, through ``ParallelEnvCopies``).
    Slot ``c * N + i`` is agent ``agent_ids[i]`` of copy ``c``. ``reset(seed=s)`` seeds copy
    ``c`` with ``s + c`` (as RLlib's multi-agent vector env does). A copy whose agents all
    ended (terminated or truncated) is reset on the next ``step()``: its slots then return the
    reset observations, reward 0 and no termination (``AutoresetMode.NEXT_STEP``), and their
    actions are ignored.
    """

    metadata = {"autoreset_mode": AutoresetMode.NEXT_STEP}

    def __init__(self, envs: BatchedEnv | Sequence[ParallelEnv], agent_ids: Optional[Sequence[str]] = None,
                 critic_input: str = "observation"):
        self.core: BatchedEnv = envs if isinstance(envs, BatchedEnv) else ParallelEnvCopies(envs, agent_ids)
        core = self.core
        self.agent_ids: List[str] = list(agent_ids if agent_ids is not None else core.possible_agents)
        if sorted(self.agent_ids) != sorted(core.possible_agents):
            raise ValueError(f"agent_ids {self.agent_ids[:5]}... are not the env's agents {core.possible_agents[:5]}...")
        #: Core row of each slot's agent (None: the same order).
        rows = [core.possible_agents.index(agent) for agent in self.agent_ids]
        self._rows = None if rows == list(range(len(rows))) else np.asarray(rows)
        self.num_copies = core.num_copies
        self.num_agents = n = len(self.agent_ids)
        self.num_envs = self.num_copies * n
        obs_spaces = [core.observation_space(a) for a in self.agent_ids]
        for agent, space in zip(self.agent_ids, obs_spaces):
            if not isinstance(space, gym.spaces.Box) or len(space.shape) != 1:
                raise ValueError(f"Agent {agent!r} has observation space {space}; the fast path needs flat Box observations.")
        self.obs_sizes = [int(s.shape[0]) for s in obs_spaces]
        self.obs_dim = max(self.obs_sizes)
        #: What follows each agent's own observation for a centralised critic (module.CRITIC_INPUTS).
        self.critic_input = critic_input
        if critic_input == "state":
            if core.state_space is None:
                raise ValueError(f"critic_input='state' needs an env with a global state(); {core.name} has none.")
            central = core.state_space
        elif critic_input == "joint_observations":
            central = joint_observation_space(obs_spaces, self.obs_dim)
        else:
            central = None
        self.central_dim = 0 if central is None else int(np.prod(central.shape))
        self.single_observation_space = padded_index_space(obs_spaces, self.obs_dim, n, central)
        self.observation_space = batch_space(self.single_observation_space, self.num_envs)
        action_spaces = [core.action_space(a) for a in self.agent_ids]
        if isinstance(action_spaces[0], gym.spaces.Box):
            self.continuous: Optional[ContinuousActions] = ContinuousActions(action_spaces)
            self.action_sizes = self.continuous.dims.tolist()
            self.single_action_space = self.continuous.module_space
            self.action_space = batch_space(self.single_action_space, self.num_envs)
            self._core_actions = np.zeros((self.num_copies, n, self.single_action_space.shape[0]), np.float32)
        else:
            self.continuous = None
            self.action_sizes = [int(space.n) for space in action_spaces]
            self.single_action_space = gym.spaces.Discrete(max(self.action_sizes))
            self.action_space = gym.spaces.MultiDiscrete(np.tile(self.action_sizes, self.num_copies))
            self._core_actions = np.zeros((self.num_copies, n), np.int64)
        self.render_mode = None

        self._obs = np.zeros((self.num_copies, n, self.obs_dim + self.central_dim + 1), np.float32)
        self._obs[..., -1] = np.arange(n, dtype=np.float32)
        self._all_copies = np.arange(self.num_copies)
        self._autoreset = np.zeros(self.num_copies, bool)

    @property
    def true_agent_types(self) -> Optional[Dict[str, int]]:
        """Ground-truth agent types of the wrapped env, if it has them (evaluation only)."""
        return self.core.true_agent_types

    @property
    def own_observation_features(self) -> Optional[tuple]:
        """Observation columns the env declares as each agent's own (identity pre-training)."""
        return self.core.own_observation_features

    def _observations(self) -> np.ndarray:
        observations = self.core.observations()
        own = observations if self._rows is None else observations[:, self._rows]
        self._obs[..., : observations.shape[-1]] = own
        if self.critic_input == "joint_observations":  # every agent's padded observation, in agent order
            joint = self._obs[:, :, : self.obs_dim].reshape(self.num_copies, 1, -1)
            self._obs[:, :, self.obs_dim : self.obs_dim + self.central_dim] = joint
        elif self.critic_input == "state":
            self._obs[:, :, self.obs_dim : self.obs_dim + self.central_dim] = self.core.states()[:, None, :]
        return self._obs.reshape(self.num_envs, -1).copy()

    def _infos(self) -> dict:
        """gymnasium's vector infos (``key`` -> per-slot values, ``_key`` -> which slots have it)."""
        per_copy = self.core.infos()
        if not per_copy or not any(any(infos.values()) for infos in per_copy if infos):
            return {}
        out: dict = {}
        for c, infos in enumerate(per_copy):
            for i, agent in enumerate(self.agent_ids):
                for key, value in (infos.get(agent) or {}).items():
                    if key not in out:
                        out[key] = np.empty(self.num_envs, dtype=object)
                        out[f"_{key}"] = np.zeros(self.num_envs, dtype=bool)
                    out[key][c * self.num_agents + i] = value
                    out[f"_{key}"][c * self.num_agents + i] = True
        return out

    # ------------------------------------------------------------------ gymnasium API
    def reset(self, *, seed: Optional[int | Sequence[Optional[int]]] = None, options: Optional[dict] = None):
        if seed is None or isinstance(seed, (int, np.integer)):
            seeds = [None if seed is None else int(seed) + c for c in range(self.num_copies)]
        else:
            seeds = list(seed)
            if len(seeds) != self.num_copies:
                raise ValueError(f"reset() got {len(seeds)} seeds for {self.num_copies} env copies.")
        self.core.reset_copies(self._all_copies, seeds)
        self._autoreset[:] = False
        return self._observations(), self._infos()

    def step(self, actions):
        actions = np.asarray(actions).reshape(self.num_copies, self.num_agents, -1)
        if self.continuous is not None:
            actions = self.continuous.to_env(actions)
        else:
            actions = actions[..., 0]
        if self._rows is None:
            core_actions = actions
        else:
            core_actions = self._core_actions
            core_actions[:, self._rows] = actions
        restarting = self._autoreset
        rewards, terminated, truncated = self.core.step_copies(core_actions, ~restarting)
        if restarting.any():
            self.core.reset_copies(np.flatnonzero(restarting), [None] * int(restarting.sum()))
        n = self.num_agents
        if terminated.ndim == 1:  # per copy: every agent of a copy ends with it
            self._autoreset = terminated | truncated
            terminated, truncated = np.repeat(terminated, n), np.repeat(truncated, n)
        else:
            self._autoreset = (terminated | truncated).all(axis=1)
            if self._rows is not None:
                terminated, truncated = terminated[:, self._rows], truncated[:, self._rows]
        if self._rows is not None:
            rewards = rewards[:, self._rows]
        return (
            self._observations(),
            rewards.reshape(-1).astype(np.float64, copy=True),
            terminated.reshape(-1).copy(),
            truncated.reshape(-1).copy(),
            self._infos(),
        )

    def close_extras(self, **kwargs) -> None:
        self.core.close()


# --------------------------------------------------------------------------- array sampling
class _StepRecord:
    """The vector steps of one ``sample()`` call, kept as the arrays the env and connectors gave."""

    def __init__(self):
        self.start_time = time.perf_counter()
        self._obs: List[np.ndarray] = []
        self._actions: List[np.ndarray] = []
        self._rewards: List[np.ndarray] = []
        self._infos: List[Optional[list]] = []
        self._extra: List[dict] = []
        self._stacked: Dict[str, np.ndarray] = {}

    def __len__(self) -> int:
        return len(self._obs)

    def add(self, observations, actions, rewards, infos, extra) -> int:
        self._obs.append(np.asarray(observations))
        self._actions.append(np.asarray(actions))
        self._rewards.append(np.asarray(rewards, dtype=np.float64))
        self._infos.append(infos if any(infos) else None)  # None: every slot's infos are empty
        self._extra.append({key: np.asarray(value) for key, value in extra.items()})
        self._stacked.clear()
        return len(self._obs) - 1

    def _stack(self, name: str) -> np.ndarray:
        """``[steps, slots, ...]`` of one column (stacked once per batch of reads)."""
        if name not in self._stacked:
            if name in (Columns.OBS, Columns.ACTIONS, Columns.REWARDS):
                items = {Columns.OBS: self._obs, Columns.ACTIONS: self._actions, Columns.REWARDS: self._rewards}[name]
            else:
                items = [extra[name] for extra in self._extra]
            self._stacked[name] = np.stack(items)
        return self._stacked[name]

    def observations(self, slot: int, start: int, end: int) -> np.ndarray:
        return self._stack(Columns.OBS)[start:end, slot]

    def infos(self, slot: int, start: int, end: int) -> list:
        return [{} if step is None else step[slot] for step in self._infos[start:end]]

    def slot_data(self, slot: int, start: int, end: int, weights_seq_no: int) -> dict:
        """Observations, actions, rewards and extra model outputs of steps ``start .. end - 1``."""
        extra = {key: self._stack(key)[start:end, slot] for key in (self._extra[0] if self._extra else {})}
        extra[WEIGHTS_SEQ_NO] = np.full(max(end - start, 0), weights_seq_no)
        return {Columns.OBS: self._stack(Columns.OBS)[start:end, slot] if end > start else None,
                Columns.ACTIONS: self._stack(Columns.ACTIONS)[start:end, slot] if end > start else None,
                Columns.REWARDS: self._stack(Columns.REWARDS)[start:end, slot] if end > start else None,
                "extra": extra}


def _concatenate(first: Optional[np.ndarray], second: Optional[np.ndarray]) -> np.ndarray:
    parts = [np.asarray(p) for p in (first, second) if p is not None and len(p)]
    if not parts:
        return np.asarray(second if second is not None else first if first is not None else [])
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


def _continuation(chunk: SingleAgentEpisode, horizon: int) -> SingleAgentEpisode:
    """What ``chunk.cut(len_lookback_buffer=horizon)`` gives, from the arrays directly."""
    lookback = min(horizon, len(chunk.actions.data))
    keep = slice(len(chunk.actions.data) - lookback, None)
    continuation = SingleAgentEpisode(
        id_=chunk.id_,
        observations=np.asarray(chunk.observations.data)[-lookback - 1:],
        observation_space=chunk.observation_space,
        infos=list(chunk.infos.data)[-lookback - 1:],
        actions=np.asarray(chunk.actions.data)[keep],
        action_space=chunk.action_space,
        rewards=np.asarray(chunk.rewards.data)[keep],
        extra_model_outputs={key: np.asarray(buffer.data)[keep] for key, buffer in chunk.extra_model_outputs.items()},
        t_started=chunk.t,
        len_lookback_buffer="auto",
    )
    continuation._custom_data = dict(chunk.custom_data)
    return continuation


@dataclasses.dataclass
class SlotRollout:
    """``K`` vector steps of every slot, time-major, as ``FastPathEnvRunner.sample_rollout`` took them.

    ``observations[k]`` is what the module saw before step ``k`` (``K + 1`` rows: the last is
    the observation after the last step). ``columns`` holds ``[K, slots, ...]`` arrays of
    actions, rewards, terminateds, truncateds and the module's outputs (action log-probs and
    distribution inputs). ``valid[k, s]`` is False where slot ``s``'s copy spent step ``k``
    getting its reset observation after an episode end (no env step, no transition).
    """

    observations: np.ndarray
    valid: np.ndarray
    columns: Dict[str, np.ndarray]
    env_steps: int


class _RolloutState:
    """What ``sample_rollout`` keeps between calls: observations, waiting copies, running returns."""

    def __init__(self, observations: np.ndarray, num_copies: int, num_agents: int):
        self.obs = observations
        self.awaiting = np.zeros(num_copies, dtype=bool)
        self.returns = np.zeros(num_copies * num_agents)
        self.lengths = np.zeros(num_copies, dtype=np.int64)
        self.started = np.full(num_copies, time.perf_counter())


# --------------------------------------------------------------------------- connectors
class SlotObservationsToBatch(ConnectorV2):
    """Env-to-module: the slots' observations, as the env returned them, as one tensor.

    RLlib's default pipeline reads every slot's last observation back out of its episode and
    batches the items one by one; the env already wrote each observation in its final layout
    (padding, agent index), and RLlib passes the step's observations to the pipeline too, in
    slot order: one ``np.stack``.
    """

    def __init__(self, *args, device=None, **kwargs):
        super().__init__(*args, **kwargs)
        self._device = device

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs):
        observations = kwargs[Columns.OBS]
        batch[Columns.OBS] = torch.from_numpy(np.stack(observations)).to(self._device or "cpu")
        return batch


def slot_env_to_module(env=None, spaces=None, device=None) -> List[ConnectorV2]:
    """The fast path's env-to-module pipeline (``config.env_runners(env_to_module_connector=...)``)."""
    return [SlotObservationsToBatch(device=device)]


class SlotTensorsToNumpy(ConnectorV2):
    """Module-to-env: the batch's tensors as numpy arrays (RLlib's ``TensorToNumpy`` walks any
    nested structure with ``dm-tree``; the fast path's batch is one flat dict of tensors)."""

    def __call__(self, *, rl_module, batch, episodes, explore=None, shared_data=None, **kwargs):
        return {key: value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else value for key, value in batch.items()}


def slot_module_to_env(env=None, spaces=None) -> List[ConnectorV2]:
    """The fast path's module-to-env pipeline: RLlib's default without its no-op pieces here.

    Sampling (``GetActions``) and the tensors as numpy (``SlotTensorsToNumpy``) as in RLlib's
    default; left out are the
    round trip ``UnBatchToIndividualItems`` -> ``ListifyDataForVectorEnv`` (the env and
    RLlib's EnvRunner take the batched arrays as they are), ``RemoveSingleTsTimeRankFromBatch``
    (recurrent policies take the multi-agent path) and ``NormalizeAndClipActions`` (a deep copy
    and a per-item tree walk; ``SlotVectorEnv`` scales Box actions to each agent's bounds).
    """
    return [GetActions(), SlotTensorsToNumpy()]


# --------------------------------------------------------------------------- the EnvRunner
def module_agent_ids(config) -> List[str]:
    """Agent ids in the module's row order, from the module's model_config."""
    agent_ids = dict(config.rl_module_spec.model_config or {}).get("agent_ids")
    if not agent_ids:
        raise ValueError("FastPathEnvRunner needs model_config['agent_ids'] (configure_sharing sets it).")
    return list(agent_ids)


class FastPathEnvRunner(SingleAgentEnvRunner):
    """RLlib's ``SingleAgentEnvRunner`` on a ``SlotVectorEnv``, counting env steps, not slot steps.

    ``config.num_envs_per_env_runner`` env copies of ``config.env`` (a registered name or a
    creator returning a PettingZoo ``ParallelEnv`` or a plain wrapper of one) run as
    ``num_envs_per_env_runner * N`` slots. Agent order is the module's (``model_config
    ['agent_ids']``). See the module docstring for what counts how.
    """

    def __init__(self, *, config, **kwargs):
        self.agent_ids = module_agent_ids(config)
        self.num_agents = len(self.agent_ids)
        self._env_episode_ids: Dict[int, str] = {}
        self._rollout: Optional[_RolloutState] = None  # sample_rollout's envs, between its calls
        self._agent_steps_to_log = 0  # env steps sampled since get_metrics logged the per-agent counts
        super().__init__(config=config, **kwargs)

    # ------------------------------------------------------------------ env
    def make_env(self) -> None:
        """Builds ``num_envs_per_env_runner`` copies of the ParallelEnv as one ``SlotVectorEnv``.

        Replaces RLlib's ``gym.make_vec`` call (whose sub-env count must equal
        ``num_envs_per_env_runner``, here the number of env copies, not of slots).
        """
        if self.env is not None:
            try:
                self.env.close()
            except Exception as err:  # noqa: BLE001 (RLlib's make_env does the same)
                logger.warning("Closing the old fast-path env failed: %s", err)
        env_ctx = self.config.env_config
        if not isinstance(env_ctx, EnvContext):
            env_ctx = EnvContext(env_ctx, worker_index=self.worker_index, num_workers=self.num_workers,
                                 remote=self.config.remote_worker_envs)
        creator = self.config.env
        if isinstance(creator, str):
            if not _global_registry.contains(ENV_CREATOR, creator):
                raise ValueError(f"The fast path needs an env registered with ray.tune.register_env(); '{creator}' is not.")
            creator = _global_registry.get(ENV_CREATOR, creator)
        num_copies = self.config.num_envs_per_env_runner

        def parallel_env() -> ParallelEnv:
            env = creator(env_ctx)
            par_env = parallel_env_of(env)
            if par_env is None:
                raise TypeError(f"The fast path needs a PettingZoo ParallelEnv (or a plain wrapper of one), got {type(env).__name__}.")
            return par_env

        first = parallel_env()
        if isinstance(first, BatchedParallelEnv):  # this package's envs: all copies in one array step
            copies = first.make_batched(num_copies)
            first.close()
        else:
            copies = [first] + [parallel_env() for _ in range(num_copies - 1)]
        critic_input = dict(self.config.rl_module_spec.model_config or {}).get("critic_input", "observation")
        self.env = DictInfoToList(SlotVectorEnv(copies, self.agent_ids, critic_input=critic_input))
        self.num_envs = self.env.num_envs
        self._needs_initial_reset = True
        make_callback(
            "on_environment_created",
            callbacks_objects=self._callbacks,
            callbacks_functions=self.config.callbacks_on_environment_created,
            kwargs=dict(env_runner=self, metrics_logger=self.metrics, env=self.env.unwrapped, env_context=env_ctx),
        )

    # ------------------------------------------------------------------ sampling in env units
    def sample(self, *, num_timesteps: Optional[int] = None, num_episodes: Optional[int] = None, **kwargs):
        """``num_timesteps`` env steps or ``num_episodes`` env episodes (each of ``N`` slots).

        Without either, RLlib samples ``rollout_fragment_length`` vector steps of all slots,
        i.e. ``rollout_fragment_length * num_envs_per_env_runner`` env steps, as on the
        multi-agent path.
        """
        n = self.num_agents
        return super().sample(
            num_timesteps=None if num_timesteps is None else num_timesteps * n,
            num_episodes=None if num_episodes is None else num_episodes * n,
            **kwargs,
        )

    #: Sample into arrays and build each slot's episode chunk once per ``sample()`` call
    #: (``_sample_into_arrays``) instead of RLlib's per-slot, per-step episode calls. Used for
    #: timestep sampling whenever no callback implements a per-episode hook (those must see
    #: every step); else RLlib's loop. The two give the same episodes (tests/test_fast_path.py).
    array_sampling: bool = True
    _told_loop = False  # the log line saying why timestep sampling takes RLlib's loop, once

    def _sample(self, *, num_timesteps=None, num_episodes=None, explore, random_actions=False, force_reset=False):
        self._stay_in_eval_mode()
        if self._rollout is not None:  # sample_rollout held the envs: its partial episodes are dropped
            self._rollout, force_reset = None, True
        if num_timesteps is None or random_actions or self._episode_hooks_in_use or not self.array_sampling:
            if num_timesteps is not None and not random_actions and not self._told_loop:
                self._told_loop = True
                why = (f"callbacks implement {sorted(self._episode_hooks_in_use)}" if self._episode_hooks_in_use
                       else "FastPathEnvRunner.array_sampling is False")
                logger.info("fast path: sampling with RLlib's per-step episode loop, not into arrays (%s)", why)
            return super()._sample(num_timesteps=num_timesteps, num_episodes=num_episodes, explore=explore,
                                   random_actions=random_actions, force_reset=force_reset)
        return self._sample_into_arrays(num_timesteps, explore, force_reset)

    def _sample_into_arrays(self, num_timesteps: int, explore: bool, force_reset: bool) -> List[SingleAgentEpisode]:
        """RLlib's ``_sample`` loop for ``num_timesteps`` slot steps, with the steps kept as arrays.

        All slots of a copy start and end their episodes together, so the data of a copy's
        current episode is one range of recorded vector steps: a finished episode becomes one
        ``SingleAgentEpisode`` per slot, built from array slices when its copy ends, and the
        ongoing ones are built (and cut for the next call) at the end.
        """
        if force_reset or self._needs_initial_reset:
            self._reset_envs_and_episodes(explore)
        n, num_copies = self.num_agents, self.num_envs // self.num_agents
        steps = _StepRecord()
        # Per copy: its slots' episode objects (data so far, or empty ones waiting for their
        # reset observation), the recorded step with the reset observation of an episode begun
        # in this call (-1: none), and the first recorded step of its current episode.
        heads = [self._ongoing_episodes[c * n:(c + 1) * n] for c in range(num_copies)]
        awaiting = np.array([not heads[c][0].is_reset for c in range(num_copies)])
        reset_at = np.full(num_copies, -1)
        first_step = np.zeros(num_copies, dtype=np.int64)
        done: List[SingleAgentEpisode] = []
        ts = 0
        while ts < num_timesteps:
            to_module, self._cached_to_module = self._cached_to_module, None
            if explore:
                runners = self.config.num_env_runners or 1
                global_steps = (self.num_env_steps_sampled_lifetime // runners + ts) * runners
                with self.metrics.log_time(RLMODULE_INFERENCE_TIMER):
                    to_env = self.module.forward_exploration(to_module, t=global_steps)
            else:
                with self.metrics.log_time(RLMODULE_INFERENCE_TIMER):
                    to_env = self.module.forward_inference(to_module)
            to_env = self._module_to_env(rl_module=self.module, batch=to_env, episodes=self._ongoing_episodes, explore=explore,
                                         shared_data=self._shared_data, metrics=self.metrics,
                                         metrics_prefix_key=(MODULE_TO_ENV_CONNECTOR,))
            actions = to_env.pop(Columns.ACTIONS)
            results = self._try_env_step(to_env.pop(Columns.ACTIONS_FOR_ENV, actions))
            if results == ENV_STEP_FAILURE:  # as RLlib: drop the ongoing episodes, reset every env
                ts = 0
                self._reset_envs_and_episodes(explore)
                steps = _StepRecord()
                heads = [self._ongoing_episodes[c * n:(c + 1) * n] for c in range(num_copies)]
                awaiting[:], reset_at[:], first_step[:] = False, -1, 0
                continue
            observations, rewards, terminated, truncated, infos = results
            k = steps.add(observations, actions, rewards, infos, to_env)
            ts += int((~awaiting).sum()) * n  # a reset observation is no env step
            for c in np.flatnonzero(awaiting).tolist():  # their reset observations arrived
                heads[c] = self._ongoing_episodes[c * n:(c + 1) * n]
            reset_at[awaiting], first_step[awaiting] = k, k + 1
            awaiting[:] = False
            ended = (np.asarray(terminated) | np.asarray(truncated)).reshape(num_copies, n).all(axis=1)
            for c in np.flatnonzero(ended).tolist():
                for agent in range(n):
                    slot = c * n + agent
                    episode = self._slot_chunk(steps, heads[c][agent], slot, reset_at[c], first_step[c], k + 1)
                    episode.is_terminated, episode.is_truncated = bool(terminated[slot]), bool(truncated[slot])
                    done.append(episode)
                    self._new_episode(slot, self._ongoing_episodes)
                awaiting[c] = True
            self._cached_to_module = self._env_to_module(
                episodes=self._ongoing_episodes, batch={}, explore=explore, rl_module=self.module, shared_data=self._shared_data,
                metrics=self.metrics, metrics_prefix_key=(ENV_TO_MODULE_CONNECTOR,),
                **{Columns.OBS: observations, Columns.ACTIONS: actions, Columns.REWARDS: rewards, Columns.INFOS: infos,
                   Columns.TERMINATEDS: terminated, Columns.TRUNCATEDS: truncated})
        ongoing = []
        horizon = self.config.episode_lookback_horizon
        for c in range(num_copies):
            if awaiting[c]:  # empty episodes waiting for their reset observation carry over as they are
                continue
            for agent in range(n):
                slot = c * n + agent
                chunk = self._slot_chunk(steps, heads[c][agent], slot, reset_at[c], first_step[c], len(steps))
                if chunk.t > chunk.t_started:
                    self._ongoing_episodes_for_metrics[chunk.id_].append(chunk)
                    ongoing.append(chunk)
                self._ongoing_episodes[slot] = _continuation(chunk, horizon)
        self._done_episodes_for_metrics.extend(done)
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=ts)
        self._increase_sampled_metrics(ts, len(done))
        return done + ongoing

    def sample_rollout(self, num_timesteps: int, explore: bool = True) -> SlotRollout:
        """``num_timesteps`` env steps (or a few more) of every slot as time-major arrays, no episodes.

        For the array training step (``rllib_adaps.rllib.array_training``). The envs, their
        current observations and the running episode returns carry over between calls;
        ``sample()`` and this method each reset the envs when they take over from the other.
        Finished env episodes are logged as ``sample()`` logs them (``get_metrics``).
        """
        n, num_copies = self.num_agents, self.num_envs // self.num_agents
        self._stay_in_eval_mode()
        if self._rollout is None or self._needs_initial_reset:
            self._reset_envs_and_episodes(explore)
            self._rollout = _RolloutState(np.asarray(self._cached_to_module[Columns.OBS]), num_copies, n)
            self._cached_to_module = None
        state = self._rollout
        columns: Dict[str, list] = defaultdict(list)
        ts, episodes = 0, 0
        runners = self.config.num_env_runners or 1
        with self.metrics.log_time(SAMPLE_TIMER):
            while ts < num_timesteps:
                to_module = {Columns.OBS: torch.from_numpy(state.obs)}
                with self.metrics.log_time(RLMODULE_INFERENCE_TIMER):
                    if explore:
                        global_steps = (self.num_env_steps_sampled_lifetime // runners + ts) * runners
                        to_env = self.module.forward_exploration(to_module, t=global_steps)
                    else:
                        to_env = self.module.forward_inference(to_module)
                for connector in self._module_to_env.connectors:  # the pieces, without the pipeline's per-piece timers
                    to_env = connector(rl_module=self.module, batch=to_env, episodes=self._ongoing_episodes, explore=explore,
                                       shared_data=self._shared_data, metrics=self.metrics)
                actions = to_env.pop(Columns.ACTIONS)
                results = self._try_env_step(to_env.pop(Columns.ACTIONS_FOR_ENV, actions))
                if results == ENV_STEP_FAILURE:  # RLlib recreated the env: start over, as its _sample does
                    self._rollout = None
                    return self.sample_rollout(num_timesteps, explore)
                observations, rewards, terminated, truncated, _ = results
                stepped = ~state.awaiting  # copies whose step was an env step (the others got their reset observation)
                columns[Columns.OBS].append(state.obs)
                columns[Columns.ACTIONS].append(actions)
                for key, value in to_env.items():
                    columns[key].append(value)
                columns[Columns.REWARDS].append(np.asarray(rewards, dtype=np.float32))
                columns[Columns.TERMINATEDS].append(np.asarray(terminated, dtype=bool))
                columns[Columns.TRUNCATEDS].append(np.asarray(truncated, dtype=bool))
                valid = np.repeat(stepped, n)
                columns["valid"].append(valid)
                ts += int(stepped.sum())
                episodes += self._rollout_bookkeeping(state, stepped, valid, rewards, terminated, truncated)
                state.obs = np.asarray(observations)
        rollout = SlotRollout(
            observations=np.stack([*columns.pop(Columns.OBS), state.obs]),
            valid=np.stack(columns.pop("valid")),
            columns={key: np.stack(value) for key, value in columns.items()},
            env_steps=ts,
        )
        self._log_env_steps(metric=self._metrics_num_env_steps_sampled, num_steps=ts)
        self._increase_sampled_metrics(ts * n, episodes * n)
        return rollout

    def _stay_in_eval_mode(self) -> None:
        """RLlib's ``forward_exploration`` switches a module in training mode to eval and back on
        every call (two walks over its submodules per vector step); an EnvRunner's module never
        trains, so it stays in eval mode (``ParameterSharingModule.train`` makes the call free)."""
        if self.module is not None and self.module.training:
            self.module.eval()

    def _rollout_bookkeeping(self, state: "_RolloutState", stepped, valid, rewards, terminated, truncated) -> int:
        """Running returns and lengths per slot; logs the env episodes that ended. Returns how many."""
        n = self.num_agents
        now = time.perf_counter()
        state.started[state.awaiting] = now
        state.returns += np.asarray(rewards, dtype=np.float64) * valid
        state.lengths += stepped
        ended = (np.asarray(terminated) | np.asarray(truncated)).reshape(-1, n).all(axis=1)
        ended_copies = np.flatnonzero(ended)
        if len(ended_copies):
            returns = state.returns.reshape(-1, n)[ended_copies]  # [ended, N]
            lengths = state.lengths[ended_copies].astype(int).tolist()
            self._log_env_episodes(
                lengths=lengths, returns=returns.sum(axis=1).tolist(), seconds=(now - state.started[ended_copies]).tolist(),
                agent_returns=dict(zip(self.agent_ids, returns.T.tolist())), agent_steps=dict.fromkeys(self.agent_ids, lengths))
            state.returns.reshape(-1, n)[ended_copies] = 0.0
            state.lengths[ended_copies] = 0
        state.awaiting = ended
        return len(ended_copies)

    def _slot_chunk(self, steps: "_StepRecord", head: SingleAgentEpisode, slot: int, reset_at: int, first_step: int,
                    end: int) -> SingleAgentEpisode:
        """One slot's episode chunk: ``head``'s data (or, for an episode begun this call, the
        reset observation recorded at ``reset_at``), then recorded steps ``first_step .. end - 1``."""
        if reset_at >= 0:  # begun this call: head is the empty episode that got the reset observation
            lookback, t_started = 0, 0
            observations, infos = steps.observations(slot, reset_at, reset_at + 1), steps.infos(slot, reset_at, reset_at + 1)
            actions, rewards, extra = None, None, {}
        else:
            lookback, t_started = head.observations.lookback, head.t_started
            observations, infos = np.asarray(head.observations.data), list(head.infos.data)
            actions, rewards = np.asarray(head.actions.data), np.asarray(head.rewards.data, dtype=np.float64)
            extra = {key: np.asarray(buffer.data) for key, buffer in head.extra_model_outputs.items()}
        new = steps.slot_data(slot, first_step, end, self._weights_seq_no)
        episode = SingleAgentEpisode(
            id_=head.id_,
            observations=_concatenate(observations, new[Columns.OBS]),
            observation_space=self.env.single_observation_space,
            infos=infos + steps.infos(slot, first_step, end),
            actions=_concatenate(actions, new[Columns.ACTIONS]),
            action_space=self.env.single_action_space,
            rewards=_concatenate(rewards, new[Columns.REWARDS]),
            extra_model_outputs={key: _concatenate(extra.get(key), new["extra"].get(key)) for key in {*extra, *new["extra"]}},
            t_started=t_started,
            len_lookback_buffer=lookback,
        )
        episode._custom_data = head.custom_data
        episode._start_time = head._start_time if head._start_time is not None else steps.start_time
        episode._last_step_time = time.perf_counter()
        return episode

    def _new_episode(self, env_index, episodes=None):
        """A slot's new episode, tagged with its agent and env episode before any callback sees it."""
        episodes = episodes if episodes is not None else self._ongoing_episodes
        copy, agent = divmod(env_index, self.num_agents)
        episode = SingleAgentEpisode(observation_space=self.env.single_observation_space,
                                     action_space=self.env.single_action_space)
        if agent == 0:  # slots of a copy start their episodes together, agent 0 first
            self._env_episode_ids[copy] = episode.id_
        episode.custom_data.update(agent_id=self.agent_ids[agent], agent_index=agent, env_index=copy,
                                   env_episode_id=self._env_episode_ids[copy])
        episodes[env_index] = episode
        self._make_on_episode_callback("on_episode_created", env_index, episodes)

    @functools.cached_property
    def _episode_hooks_in_use(self) -> frozenset:
        """Per-episode hooks some callback implements (RLlibCallback's own are no-ops)."""
        used = set()
        for hook in EPISODE_HOOKS:
            if getattr(self.config, f"callbacks_{hook}", None):
                used.add(hook)
            if any(getattr(type(c), hook, None) is not getattr(RLlibCallback, hook) for c in self._callbacks):
                used.add(hook)
        return frozenset(used)

    def _make_on_episode_callback(self, which, idx, episodes):
        """RLlib calls every per-episode hook for every slot and step; a hook no callback
        implements is skipped (the call would do nothing)."""
        if which in self._episode_hooks_in_use:
            super()._make_on_episode_callback(which, idx, episodes)

    # ------------------------------------------------------------------ metrics in env units
    def _increase_sampled_metrics(self, num_steps, num_episodes_completed):
        """``num_steps`` slot steps are ``num_steps / N`` env steps; ``N`` slot episodes one env episode."""
        env_steps = num_steps // self.num_agents
        episodes = num_episodes_completed // self.num_agents
        log = self.metrics.log_value
        log(NUM_ENV_STEPS_SAMPLED, env_steps, reduce="sum")
        log(NUM_ENV_STEPS_SAMPLED_LIFETIME, env_steps, reduce="lifetime_sum", with_throughput=True)
        log(NUM_EPISODES, episodes, reduce="sum")
        log(NUM_EPISODES_LIFETIME, episodes, reduce="lifetime_sum")
        log((NUM_MODULE_STEPS_SAMPLED, FAST_PATH_MODULE_ID), num_steps, reduce="sum")
        log((NUM_MODULE_STEPS_SAMPLED_LIFETIME, FAST_PATH_MODULE_ID), num_steps, reduce="lifetime_sum")
        self._agent_steps_to_log += env_steps  # summed per agent in get_metrics: 2N calls per sample cost more than a step
        return num_steps

    def _log_agent_steps(self) -> None:
        """Every agent steps once per env step: the per-agent counts of what was sampled since
        the last call, as sums (the same totals as one push per sample)."""
        steps, self._agent_steps_to_log = self._agent_steps_to_log, 0
        for agent in self.agent_ids:
            self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED, agent), steps, reduce="sum")
            self.metrics.log_value((NUM_AGENT_STEPS_SAMPLED_LIFETIME, agent), steps, reduce="lifetime_sum")

    def get_metrics(self):
        """Episode metrics per env episode: return summed over its agents, per-agent returns."""
        env_episodes: Dict[str, list] = defaultdict(list)
        for episode in self._done_episodes_for_metrics:
            length, ret, seconds = len(episode), episode.get_return(), episode.get_duration_s()
            for chunk in self._ongoing_episodes_for_metrics.pop(episode.id_, []):  # returned in earlier samples
                length += len(chunk)
                ret += chunk.get_return()
                seconds += chunk.get_duration_s()
            env_episodes[episode.custom_data["env_episode_id"]].append((episode.custom_data["agent_id"], length, ret, seconds))
        self._done_episodes_for_metrics.clear()
        parts = list(env_episodes.values())
        agent_returns: Dict[str, list] = defaultdict(list)
        agent_steps: Dict[str, list] = defaultdict(list)
        for part in parts:
            for agent, length, ret, _ in part:
                agent_returns[agent].append(ret)
                agent_steps[agent].append(length)
        self._log_env_episodes(
            lengths=[max(a[1] for a in p) for p in parts],
            returns=[float(sum(a[2] for a in p)) for p in parts],
            seconds=[max(a[3] for a in p) for p in parts],
            agent_returns=agent_returns,
            agent_steps=agent_steps,
        )
        self._log_agent_steps()
        return self.metrics.reduce()

    def _log_env_episodes(self, *, lengths: list, returns: list, seconds: list, agent_returns: Dict[str, list],
                          agent_steps: Dict[str, list]) -> None:
        """What RLlib's ``MultiAgentEnvRunner`` logs per episode, for env episodes in the order they
        ended (the same values into the same windows; one key at a time, shims note 9). Per-agent
        values come as columns: each agent's values in episode order."""
        if not lengths:
            return
        win = max(1, int(np.ceil(self.config.metrics_num_episodes_for_smoothing / (self.config.num_env_runners or 1))))
        mean = {EPISODE_LEN_MEAN: lengths, EPISODE_RETURN_MEAN: returns, EPISODE_DURATION_SEC_MEAN: seconds}
        mean.update({(EPISODE_AGENT_RETURN_MEAN, a): v for a, v in agent_returns.items()})
        mean.update({(EPISODE_AGENT_STEPS, a): v for a, v in agent_steps.items()})
        mean[(EPISODE_MODULE_RETURN_MEAN, FAST_PATH_MODULE_ID)] = returns
        for key, values in mean.items():
            log_values(self.metrics, key, values, window=win)
        for reduce, keys in (("min", (EPISODE_LEN_MIN, EPISODE_RETURN_MIN)), ("max", (EPISODE_LEN_MAX, EPISODE_RETURN_MAX))):
            for key, values in zip(keys, (lengths, returns)):
                log_values(self.metrics, key, values, reduce=reduce, window=win)


def env_episode_returns(episodes: Sequence[SingleAgentEpisode]) -> List[Dict[str, float]]:
    """Per env episode, each agent's return, from the fast path's finished slot episodes."""
    by_episode: Dict[str, Dict[str, float]] = defaultdict(dict)
    for episode in episodes:
        data = episode.custom_data
        by_episode[data["env_episode_id"]][data["agent_id"]] = float(episode.get_return())
    return list(by_episode.values())
