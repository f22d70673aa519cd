"""Role Particles: a test env whose roles differ in observation size, reward and dynamics.

A small particle world (MPE physics, vectorised in numpy like BPS) with three roles:

| role       | agents (default) | observation                                   | actions | reward                        | push |
|------------|------------------|-----------------------------------------------|---------|-------------------------------|------|
| 0 leader   | 1                | own vel, pos, landmark offsets, team centroid | 5       | -distance to landmark 0       | 2.5  |
| 1 follower | 4                | own vel, pos, landmark offsets, leader offset | 5       | -distance to the leader       | 5.0  |
| 2 scout    | 3                | own vel, pos, landmark offsets                | 4       | -distance to landmark 1       | 8.0  |

Leader and followers have the same observation and action spaces, so only their rewards and
dynamics tell them apart, and the leader role is held by one agent: an identity model must
find a one-agent cluster. Scouts have a smaller observation (padded by the training pipeline)
and no no-op action. It exists to test identity pre-training (``true_agent_types`` is the
role); it is not one of the papers' benchmarks.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from rllib_adaps.envs.base import EnvConfigError, TypedParallelEnv, agent_names, check_float, check_int, check_keys

ENV_NAME = "RoleParticles"
CONFIG_KEYS = ("agents_per_role", "max_steps", "reward_scale")
ROLE_NAMES = ("leader", "follower", "scout")

TIMESTEP = 0.1
DAMPING = 0.25
#: Push strength (velocity change per step = push x direction x TIMESTEP) per role.
ROLE_PUSH = np.array([2.5, 5.0, 8.0])
#: Number of discrete actions per role: the scout has no no-op.
ROLE_ACTIONS = (5, 5, 4)
#: Action -> direction; scouts use rows 1..4 (their action a is row a + 1).
DIRECTIONS = np.array([[0.0, 0.0], [-1.0, 0.0], [1.0, 0.0], [0.0, -1.0], [0.0, 1.0]])
NUM_LANDMARKS = 2
AGENT_SPAWN_RANGE = 1.0
LANDMARK_SPAWN_RANGE = 2.0
BASE_OBS = 4 + 2 * NUM_LANDMARKS  # own velocity, own position, landmark offsets
ROLE_OBS = (BASE_OBS + 2, BASE_OBS + 2, BASE_OBS)


class RoleParticles(TypedParallelEnv):
    """Leader, followers and scouts in a 2-D particle world (see the module docstring).

    Observations are float32 and role-dependent in size; rewards are individual
    (``-reward_scale x distance``); episodes end by truncation after ``max_steps``.
    """

    metadata = {"name": "role_particles_v0", "render_modes": []}

    def __init__(self, agents_per_role: Sequence[int] = (1, 4, 3), max_steps: int = 50, reward_scale: float = 0.5):
        if isinstance(agents_per_role, (str, bytes, Mapping)) or len(agents_per_role) != len(ROLE_NAMES):
            raise EnvConfigError(
                f"{ENV_NAME}: 'agents_per_role' must list {len(ROLE_NAMES)} counts "
                f"({', '.join(ROLE_NAMES)}), got {agents_per_role!r}."
            )
        counts = [check_int(ENV_NAME, f"agents_per_role[{i}]", c, 0) for i, c in enumerate(agents_per_role)]
        if counts[0] < 1:
            raise EnvConfigError(f"{ENV_NAME}: there must be at least one leader, got agents_per_role={counts}.")
        self.agents_per_role = tuple(counts)
        self.max_steps = check_int(ENV_NAME, "max_steps", max_steps, 1)
        self.reward_scale = check_float(ENV_NAME, "reward_scale", reward_scale, 1e-9)

        self.role = np.repeat(np.arange(len(ROLE_NAMES)), counts)
        num_agents = len(self.role)
        self.possible_agents = agent_names(num_agents)
        self.agents: list[str] = []
        self.render_mode = None
        self.true_agent_types = dict(zip(self.possible_agents, self.role.tolist()))
        self._observation_spaces = {
            a: spaces.Box(-np.inf, np.inf, shape=(ROLE_OBS[r],), dtype=np.float32)
            for a, r in zip(self.possible_agents, self.role)
        }
        self._action_spaces = {a: spaces.Discrete(ROLE_ACTIONS[r]) for a, r in zip(self.possible_agents, self.role)}
        self._push = ROLE_PUSH[self.role][:, None]
        self._action_offset = (self.role == 2).astype(np.intp)  # scouts skip the no-op row
        self._num_actions = np.array([ROLE_ACTIONS[r] for r in self.role])
        self._rng = np.random.default_rng()
        self._steps = 0
        self.positions = np.zeros((num_agents, 2))
        self.velocities = np.zeros((num_agents, 2))
        self.landmarks = np.zeros((NUM_LANDMARKS, 2))

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]) -> "RoleParticles":
        check_keys(ENV_NAME, env_config, CONFIG_KEYS)
        return cls(**dict(env_config))

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        if seed is not None:
            self._rng = np.random.default_rng(seed)
        n = len(self.possible_agents)
        self.positions = self._rng.uniform(-AGENT_SPAWN_RANGE, AGENT_SPAWN_RANGE, (n, 2))
        self.velocities = np.zeros((n, 2))
        self.landmarks = self._rng.uniform(-LANDMARK_SPAWN_RANGE, LANDMARK_SPAWN_RANGE, (NUM_LANDMARKS, 2))
        self._steps = 0
        self.agents = list(self.possible_agents)
        return self._observations(), {a: {} for a in self.agents}

    def step(self, actions: Mapping[str, Any]):
        agents = self.agents
        if not agents:
            raise RuntimeError(f"{ENV_NAME}: step() called with no episode running; call reset() first.")
        try:
            chosen = np.fromiter((actions[a] for a in agents), dtype=np.intp, count=len(agents))
        except KeyError as missing:
            raise ValueError(f"{ENV_NAME}: no action given for live agent {missing}.") from None
        if (chosen < 0).any() or (chosen >= self._num_actions).any():
            raise ValueError(f"{ENV_NAME}: actions out of range for the agents' spaces: {chosen.tolist()}.")
        directions = DIRECTIONS[chosen + self._action_offset]
        self.velocities = self.velocities * (1.0 - DAMPING) + directions * self._push * TIMESTEP
        self.positions = self.positions + self.velocities * TIMESTEP
        self._steps += 1
        rewards = (-self.reward_scale * self._distances()).tolist()
        truncated = self._steps >= self.max_steps
        result = (
            self._observations(),
            dict(zip(agents, rewards)),
            dict.fromkeys(agents, False),
            dict.fromkeys(agents, truncated),
            {a: {} for a in agents},
        )
        if truncated:
            self.agents = []
        return result

    def _leader_position(self) -> np.ndarray:
        return self.positions[0]  # role blocks are contiguous and there is at least one leader

    def _distances(self) -> np.ndarray:
        """Each agent's distance to what its role is rewarded for approaching."""
        targets = np.empty_like(self.positions)
        targets[self.role == 0] = self.landmarks[0]
        targets[self.role == 1] = self._leader_position()
        targets[self.role == 2] = self.landmarks[1]
        return np.linalg.norm(targets - self.positions, axis=1)

    def _observations(self) -> dict[str, np.ndarray]:
        n = len(self.positions)
        full = np.zeros((n, BASE_OBS + 2), dtype=np.float32)
        full[:, 0:2] = self.velocities
        full[:, 2:4] = self.positions
        full[:, 4:BASE_OBS] = (self.landmarks[None, :, :] - self.positions[:, None, :]).reshape(n, -1)
        extra = np.where((self.role == 0)[:, None], self.positions.mean(axis=0), self._leader_position()) - self.positions
        full[:, BASE_OBS:] = extra
        return {a: full[i, : ROLE_OBS[self.role[i]]] for i, a in enumerate(self.possible_agents)}

    def render(self):
        raise NotImplementedError(f"{ENV_NAME} has no render modes.")

    def close(self):
        pass
