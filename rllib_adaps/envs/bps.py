"""Blind-particle Spread (BPS): the SePS paper's modified MPE spread, vectorised in numpy.

Agents come in types (contiguous blocks of agent indices); each type owns one landmark and
each agent is rewarded for being close to its own type's landmark. Agents observe every
landmark but not which one is theirs, so a shared policy can only tell types apart through
what they learn from rewards (v1-v4) or, in v5/v6, through a per-type fixed shuffle of the
observation vector. That makes BPS a test of whether parameter sharing can separate types.

| preset | agents per type | agents / landmarks | observation shuffled per type |
|--------|-----------------|--------------------|-------------------------------|
| v1     | 5, 5, 5         | 15 / 3             | no                            |
| v2     | 10, 10, 10      | 30 / 3             | no                            |
| v3     | 6 x 5           | 30 / 5             | no                            |
| v4     | 3, 3, 3, 12, 9  | 30 / 5             | no                            |
| v5     | 5, 5, 5         | 15 / 3             | yes                           |
| v6     | 6 x 5           | 30 / 5             | yes                           |

The physics are MPE's (dt 0.1, damping 0.25, sensitivity 5, mass 1, no collisions, no speed
limit), computed for all agents of all env copies at once (``BlindParticleSpreadBatch``): one step
costs a handful of numpy calls.
"""

from __future__ import annotations

import functools
import math
from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from rllib_adaps.envs.base import (
    EnvConfigError,
    agent_names,
    check_bool,
    check_choice,
    check_int,
    check_keys,
)
from rllib_adaps.envs.batched import BatchedEnv, BatchedParallelEnv, seeded_generator

ENV_NAME = "BlindParticleSpread"

#: preset -> (agents per type, observation shuffled per type)
PRESETS: dict[str, tuple[tuple[int, ...], bool]] = {
    "v1": ((5, 5, 5), False),
    "v2": ((10, 10, 10), False),
    "v3": ((6, 6, 6, 6, 6), False),
    "v4": ((3, 3, 3, 12, 9), False),
    "v5": ((5, 5, 5), True),
    "v6": ((6, 6, 6, 6, 6), True),
}
DEFAULT_PRESET = "v2"

CONFIG_KEYS = (
    "preset",
    "agents_per_type",
    "shuffle_obs",
    "max_steps",
    "reward_scale",
    "permutation_seed",
    "continuous_actions",
)

# MPE world constants.
TIMESTEP = 0.1
DAMPING = 0.25
SENSITIVITY = 5.0
AGENT_MASS = 1.0
AGENT_SPAWN_RANGE = 1.0
LANDMARK_SPAWN_RANGE = 3.0

#: Discrete action -> unit push direction: no-op, -x, +x, -y, +y (MPE's order).
ACTION_DIRECTIONS = np.array(
    [[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]], dtype=np.float64
)
NUM_ACTIONS = len(ACTION_DIRECTIONS)

#: Own velocity (2) and own position (2) come before the landmark offsets.
OWN_STATE_DIM = 4


def _check_agents_per_type(value: Any) -> tuple[int, ...]:
    """Returns the group sizes as a tuple of positive ints, else raises."""
    if isinstance(value, (str, bytes, Mapping)) or not isinstance(value, (Sequence, np.ndarray)):
        raise EnvConfigError(
            f"{ENV_NAME}: 'agents_per_type' must be a list of positive integers, got {value!r}."
        )
    if len(value) == 0:
        raise EnvConfigError(
            f"{ENV_NAME}: 'agents_per_type' must list at least one group size (>= 1), got []."
        )
    return tuple(
        check_int(ENV_NAME, f"agents_per_type[{index}]", size, 1)
        for index, size in enumerate(value)
    )


def _check_reward_scale(value: Any) -> float:
    """Returns ``value`` as a float if it is finite and > 0, else raises."""
    if isinstance(value, bool):
        scale = math.nan
    else:
        try:
            scale = float(value)
        except (TypeError, ValueError):
            scale = math.nan
    if not (math.isfinite(scale) and scale > 0.0):
        raise EnvConfigError(
            f"{ENV_NAME}: 'reward_scale' must be a finite number > 0, got {value!r}."
        )
    return scale


def _distinct_permutations(num_types: int, obs_dim: int, seed: int) -> np.ndarray:
    """One observation permutation per type, pairwise different, from ``seed`` alone.

    Drawn from their own generator so that every env built with the same ``seed`` agrees,
    whatever seeds its episodes are reset with. Redrawing a (very unlikely) repeat keeps the
    promise that types are told apart by their observation layout.
    """
    rng = np.random.default_rng(seed)
    permutations: list[np.ndarray] = []
    while len(permutations) < num_types:
        candidate = rng.permutation(obs_dim)
        if not any(np.array_equal(candidate, kept) for kept in permutations):
            permutations.append(candidate)
    return np.stack(permutations)


@dataclass(frozen=True)
class BPSParams:
    """Validated BPS settings (one home for checking ``env_config``)."""

    preset: str | None
    agents_per_type: tuple[int, ...]
    shuffle_obs: bool
    max_steps: int
    reward_scale: float
    permutation_seed: int
    continuous_actions: bool = False

    @classmethod
    def build(
        cls,
        preset: str | None = None,
        agents_per_type: Sequence[int] | None = None,
        shuffle_obs: bool | None = None,
        max_steps: int = 50,
        reward_scale: float = 0.5,
        permutation_seed: int = 0,
        continuous_actions: bool = False,
    ) -> "BPSParams":
        if preset is not None and agents_per_type is not None:
            raise EnvConfigError(
                f"{ENV_NAME}: 'preset' and 'agents_per_type' conflict: give one of them "
                f"(got preset={preset!r}, agents_per_type={agents_per_type!r})."
            )
        if agents_per_type is None:
            preset = check_choice(ENV_NAME, "preset", preset or DEFAULT_PRESET, list(PRESETS))
            group_sizes, default_shuffle = PRESETS[preset]
        else:
            group_sizes, default_shuffle = _check_agents_per_type(agents_per_type), False
        return cls(
            preset=preset,
            agents_per_type=group_sizes,
            shuffle_obs=check_bool(ENV_NAME, "shuffle_obs", default_shuffle if shuffle_obs is None else shuffle_obs),
            max_steps=check_int(ENV_NAME, "max_steps", max_steps, 1),
            reward_scale=_check_reward_scale(reward_scale),
            permutation_seed=check_int(ENV_NAME, "permutation_seed", permutation_seed, 0),
            continuous_actions=check_bool(ENV_NAME, "continuous_actions", continuous_actions),
        )


class BlindParticleSpreadBatch(BatchedEnv):
    """``num_copies`` BPS worlds as arrays ``[copies, agents, 2]``, stepped in one call."""

    name = ENV_NAME

    def __init__(self, params: BPSParams, num_copies: int):
        self.params = params
        self.num_copies = num_copies
        self.num_types = len(params.agents_per_type)
        self.num_landmarks = self.num_types
        self.obs_dim = OWN_STATE_DIM + 2 * self.num_landmarks
        self.num_agents = num_agents = sum(params.agents_per_type)
        self.possible_agents = agent_names(num_agents)
        #: Type index of each agent, in agent order (contiguous blocks).
        self.agent_type_index = np.repeat(np.arange(self.num_types), params.agents_per_type)
        self.true_agent_types = dict(zip(self.possible_agents, self.agent_type_index.tolist()))
        self._observation_space = spaces.Box(-np.inf, np.inf, shape=(self.obs_dim,), dtype=np.float32)
        # Continuous: a force in [-1, 1] per axis (MPE's continuous spread moves the same way);
        # discrete: MPE's five moves, each a unit force along one axis.
        self._action_space = spaces.Box(-1.0, 1.0, (2,), np.float32) if params.continuous_actions else spaces.Discrete(NUM_ACTIONS)
        #: Per-type observation permutations (None when observations are not shuffled).
        self.obs_permutations: np.ndarray | None = None
        self._agent_obs_permutation: np.ndarray | None = None
        if params.shuffle_obs:
            self.obs_permutations = _distinct_permutations(self.num_types, self.obs_dim, params.permutation_seed)
            self._agent_obs_permutation = self.obs_permutations[self.agent_type_index]
        # Velocity change of one step per action: force = sensitivity x direction, a = F / m.
        self._velocity_change_per_action = ACTION_DIRECTIONS * (SENSITIVITY / AGENT_MASS) * TIMESTEP
        self._own_landmark_one_hot = np.eye(self.num_landmarks)[self.agent_type_index]  # [N, L]

        self._generators = [seeded_generator(None) for _ in range(num_copies)]
        self.steps_taken = np.zeros(num_copies, dtype=np.int64)
        self.agent_positions = np.zeros((num_copies, num_agents, 2))
        self.agent_velocities = np.zeros((num_copies, num_agents, 2))
        self.landmark_positions = np.zeros((num_copies, self.num_landmarks, 2))
        self._observations = np.zeros((num_copies, num_agents, self.obs_dim), np.float32)
        self._no_rewards = np.zeros((num_copies, num_agents))
        self._no_ends = np.zeros(num_copies, dtype=bool)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete | spaces.Box:
        return self._action_space

    def _velocity_change(self, actions: np.ndarray) -> np.ndarray:
        if self.params.continuous_actions:  # [C, N, 2] forces, clipped to the action space
            return np.clip(actions, -1.0, 1.0) * (SENSITIVITY / AGENT_MASS * TIMESTEP)
        return self._velocity_change_per_action[actions]

    def reset_copies(self, copies: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Same draws per copy as one env: agent positions, then landmark positions."""
        for copy, seed in zip(np.asarray(copies).tolist(), seeds):
            if seed is not None:
                self._generators[copy] = seeded_generator(seed)
            rng = self._generators[copy]
            self.agent_positions[copy] = rng.uniform(-AGENT_SPAWN_RANGE, AGENT_SPAWN_RANGE, (self.num_agents, 2))
            self.landmark_positions[copy] = rng.uniform(
                -LANDMARK_SPAWN_RANGE, LANDMARK_SPAWN_RANGE, (self.num_landmarks, 2)
            )
        self.agent_velocities[copies] = 0.0
        self.steps_taken[copies] = 0
        self._observe(copies)

    def step_copies(self, actions: np.ndarray, active: np.ndarray):
        """MPE's damped Euler step for every agent of the active copies."""
        if not active.all():
            return self._step_some(actions, active)
        velocities = self.agent_velocities
        velocities *= 1.0 - DAMPING
        velocities += self._velocity_change(actions)
        self.agent_positions += velocities * TIMESTEP
        self.steps_taken += 1
        distances = self._observe(slice(None))
        truncated = self.steps_taken >= self.params.max_steps
        return -self.params.reward_scale * distances, self._no_ends, truncated

    def _step_some(self, actions: np.ndarray, active: np.ndarray):
        copies = np.flatnonzero(active)
        velocities = self.agent_velocities[copies] * (1.0 - DAMPING)
        velocities += self._velocity_change(actions[copies])
        self.agent_velocities[copies] = velocities
        self.agent_positions[copies] += velocities * TIMESTEP
        self.steps_taken[copies] += 1
        rewards = np.zeros((self.num_copies, self.num_agents))
        rewards[copies] = -self.params.reward_scale * self._observe(copies)
        truncated = np.zeros(self.num_copies, dtype=bool)
        truncated[copies] = self.steps_taken[copies] >= self.params.max_steps
        return rewards, self._no_ends, truncated

    def observations(self) -> np.ndarray:
        return self._observations

    def _observe(self, copies) -> np.ndarray:
        """Writes the observations of ``copies``; returns each agent's own-landmark distance there."""
        positions = self.agent_positions[copies]
        landmark_offsets = self.landmark_positions[copies][:, None, :, :] - positions[:, :, None, :]
        observations = np.empty((*positions.shape[:2], self.obs_dim), dtype=np.float32)
        observations[..., 0:2] = self.agent_velocities[copies]
        observations[..., 2:4] = positions
        observations[..., OWN_STATE_DIM:] = landmark_offsets.reshape(*positions.shape[:2], 2 * self.num_landmarks)
        own_offsets = np.einsum("cnlk,nl->cnk", landmark_offsets, self._own_landmark_one_hot)
        own_landmark_distances = np.sqrt(np.einsum("cnk,cnk->cn", own_offsets, own_offsets))
        if self._agent_obs_permutation is not None:
            observations = np.take_along_axis(observations, self._agent_obs_permutation[None], axis=2)
        self._observations[copies] = observations
        return own_landmark_distances


class BlindParticleSpread(BatchedParallelEnv):
    """Blind-particle Spread: typed agents seek their type's landmark without seeing which it is.

    Observation (float32, 4 + 2L): own velocity, own position, then every landmark's position
    relative to the agent, in landmark order. With ``shuffle_obs`` the vector is permuted by
    a fixed per-type permutation (``obs_permutations[type]``: shuffled[k] = plain[perm[k]]).
    Reward: -reward_scale x distance to the own type's landmark, per agent. Episodes end by
    truncation after ``max_steps`` steps. Actions: MPE's five discrete moves, or with
    ``continuous_actions`` a ``Box(-1, 1, (2,))`` force (x, y) of the same strength per axis.
    """

    def __init__(
        self,
        preset: str | None = None,
        agents_per_type: Sequence[int] | None = None,
        shuffle_obs: bool | None = None,
        max_steps: int = 50,
        reward_scale: float = 0.5,
        permutation_seed: int = 0,
        continuous_actions: bool = False,
    ):
        self.params = BPSParams.build(preset, agents_per_type, shuffle_obs, max_steps, reward_scale, permutation_seed,
                                      continuous_actions)
        super().__init__(functools.partial(BlindParticleSpreadBatch, self.params))
        self.metadata = {"name": "blind_particle_spread_v0", "render_modes": []}
        self.preset = self.params.preset
        self.agents_per_type = self.params.agents_per_type
        self.shuffle_obs = self.params.shuffle_obs
        self.max_steps = self.params.max_steps
        self.reward_scale = self.params.reward_scale
        self.permutation_seed = self.params.permutation_seed
        self.num_types = self.num_landmarks = self.core.num_types
        self.obs_dim = self.core.obs_dim
        self.obs_permutations = self.core.obs_permutations

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]) -> "BlindParticleSpread":
        """The validated constructor that the RLlib env registry calls with ``env_config``."""
        check_keys(ENV_NAME, env_config, CONFIG_KEYS)
        return cls(**dict(env_config))

    # The single copy's world, for tests and plots.
    @property
    def agent_positions(self) -> np.ndarray:
        return self.core.agent_positions[0]

    @property
    def agent_velocities(self) -> np.ndarray:
        return self.core.agent_velocities[0]

    @property
    def landmark_positions(self) -> np.ndarray:
        return self.core.landmark_positions[0]
