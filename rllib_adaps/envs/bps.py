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
limit), computed for all agents at once: one step costs a handful of numpy calls.
"""

from __future__ import annotations

import math
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from rllib_adaps.envs.base import (
    EnvConfigError,
    TypedParallelEnv,
    agent_names,
    check_bool,
    check_choice,
    check_int,
    check_keys,
)

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


class BlindParticleSpread(TypedParallelEnv):
    """Blind-particle Spread: typed agents seek their type's landmark without seeing which it is.

    Observation (float32, 4 + 2L): own velocity, own position, then every landmark's position
    relative to the agent, in landmark order. With ``shuffle_obs`` the vector is permuted by
    a fixed per-type permutation (``obs_permutations[type]``: shuffled[k] = plain[perm[k]]).
    Reward: -reward_scale x distance to the own type's landmark, per agent. Episodes end by
    truncation after ``max_steps`` steps.
    """

    metadata = {"name": "blind_particle_spread_v0", "render_modes": []}

    def __init__(
        self,
        preset: str | None = None,
        agents_per_type: Sequence[int] | None = None,
        shuffle_obs: bool | None = None,
        max_steps: int = 50,
        reward_scale: float = 0.5,
        permutation_seed: int = 0,
    ):
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
        self.preset: str | None = preset
        self.agents_per_type: tuple[int, ...] = group_sizes
        if shuffle_obs is None:
            shuffle_obs = default_shuffle
        self.shuffle_obs: bool = check_bool(ENV_NAME, "shuffle_obs", shuffle_obs)
        self.max_steps: int = check_int(ENV_NAME, "max_steps", max_steps, 1)
        self.reward_scale: float = _check_reward_scale(reward_scale)
        self.permutation_seed: int = check_int(ENV_NAME, "permutation_seed", permutation_seed, 0)

        self.num_types = len(group_sizes)
        self.num_landmarks = self.num_types
        self.obs_dim = OWN_STATE_DIM + 2 * self.num_landmarks
        num_agents = sum(group_sizes)

        self.possible_agents = agent_names(num_agents)
        self.agents: list[str] = []  # empty until reset() starts an episode
        self.render_mode = None
        #: Type index of each agent, in agent order (contiguous blocks).
        self._agent_type_index = np.repeat(np.arange(self.num_types), group_sizes)
        self.true_agent_types = dict(zip(self.possible_agents, self._agent_type_index.tolist()))

        self._observation_spaces = {
            agent: spaces.Box(-np.inf, np.inf, shape=(self.obs_dim,), dtype=np.float32)
            for agent in self.possible_agents
        }
        self._action_spaces = {
            agent: spaces.Discrete(NUM_ACTIONS) for agent in self.possible_agents
        }

        #: Per-type observation permutations (None when observations are not shuffled).
        self.obs_permutations: np.ndarray | None = None
        self._agent_obs_permutation: np.ndarray | None = None
        if self.shuffle_obs:
            self.obs_permutations = _distinct_permutations(
                self.num_types, self.obs_dim, self.permutation_seed
            )
            self._agent_obs_permutation = self.obs_permutations[self._agent_type_index]
        self._agent_rows = np.arange(num_agents)
        self._agent_rows_column = self._agent_rows[:, None]

        # Velocity change of one step per action: force = sensitivity x direction, a = F / m.
        self._velocity_change_per_action = ACTION_DIRECTIONS * (SENSITIVITY / AGENT_MASS) * TIMESTEP

        self._rng = np.random.default_rng()
        self._steps_taken = 0
        self.agent_positions = np.zeros((num_agents, 2))
        self.agent_velocities = np.zeros((num_agents, 2))
        self.landmark_positions = np.zeros((self.num_landmarks, 2))

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]) -> "BlindParticleSpread":
        """The validated constructor that the RLlib env registry calls with ``env_config``."""
        check_keys(ENV_NAME, env_config, CONFIG_KEYS)
        return cls(**dict(env_config))

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        """Starts an episode; ``seed`` reseeds the env's own generator (same seed, same episode)."""
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        num_agents = len(self.possible_agents)
        self.agent_positions = self._rng.uniform(
            -AGENT_SPAWN_RANGE, AGENT_SPAWN_RANGE, (num_agents, 2)
        )
        self.landmark_positions = self._rng.uniform(
            -LANDMARK_SPAWN_RANGE, LANDMARK_SPAWN_RANGE, (self.num_landmarks, 2)
        )
        self.agent_velocities = np.zeros((num_agents, 2))
        self._steps_taken = 0
        self.agents = list(self.possible_agents)
        observations, _ = self._observe()
        return dict(zip(self.agents, observations)), {agent: {} for agent in self.agents}

    def step(self, actions: Mapping[str, Any]):
        """Moves every agent by MPE's damped Euler step and returns per-agent results."""
        agents = self.agents
        if not agents:
            raise RuntimeError(
                f"{ENV_NAME}: step() called with no episode running; call reset() first."
            )
        try:
            action_indices = np.fromiter(
                (actions[agent] for agent in agents), dtype=np.intp, count=len(agents)
            )
        except KeyError as missing:
            raise ValueError(f"{ENV_NAME}: no action given for live agent {missing}.") from None
        if action_indices.min() < 0 or action_indices.max() >= NUM_ACTIONS:
            raise ValueError(
                f"{ENV_NAME}: actions must be in [0, {NUM_ACTIONS - 1}], "
                f"got {action_indices.tolist()}."
            )

        velocities = self.agent_velocities * (1.0 - DAMPING)
        velocities += self._velocity_change_per_action[action_indices]
        self.agent_velocities = velocities
        self.agent_positions = self.agent_positions + velocities * TIMESTEP
        self._steps_taken += 1

        observations, own_landmark_distances = self._observe()
        rewards = (-self.reward_scale * own_landmark_distances).tolist()
        truncated = self._steps_taken >= self.max_steps
        results = (
            dict(zip(agents, observations)),
            dict(zip(agents, rewards)),
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, truncated),
            {agent: {} for agent in agents},
        )
        if truncated:
            self.agents = []
        return results

    def _observe(self) -> tuple[np.ndarray, np.ndarray]:
        """All observations as one (N, D) float32 array, and each agent's own-landmark distance."""
        positions = self.agent_positions
        num_agents = len(positions)
        landmark_offsets = self.landmark_positions[None, :, :] - positions[:, None, :]
        observations = np.empty((num_agents, self.obs_dim), dtype=np.float32)
        observations[:, 0:2] = self.agent_velocities
        observations[:, 2:4] = positions
        observations[:, OWN_STATE_DIM:] = landmark_offsets.reshape(num_agents, -1)
        own_offsets = landmark_offsets[self._agent_rows, self._agent_type_index]
        own_landmark_distances = np.sqrt(np.einsum("ij,ij->i", own_offsets, own_offsets))
        if self._agent_obs_permutation is not None:
            observations = observations[self._agent_rows_column, self._agent_obs_permutation]
        return observations, own_landmark_distances

    def render(self):
        raise NotImplementedError(f"{ENV_NAME} has no render modes.")

    def close(self):
        pass
