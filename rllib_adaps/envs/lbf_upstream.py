"""Level-Based Foraging with persistent levels, run by the installed ``lbforaging`` engine.

Pick it with ``env_config={"implementation": "upstream"}``. It is the reference that the numpy
implementation in :mod:`rllib_adaps.envs.lbf` is tested against step for step, and it is slow:
one Python object per player, a dict of collisions and a set of loaders per step.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces
from lbforaging.foraging.environment import ForagingEnv

from rllib_adaps.envs.base import TypedParallelEnv, agent_names
from rllib_adaps.envs.lbf import DEFAULTS, LBFParams, own_observation_features, parse_env_config


class _FixedLevelForagingEnv(ForagingEnv):
    """``ForagingEnv`` whose ``spawn_players`` keeps each player's level and order."""

    def __init__(self, levels: Sequence[int], **kwargs: Any):
        self.fixed_levels = np.asarray(levels, dtype=np.int64)
        super().__init__(
            players=len(levels),
            min_player_level=self.fixed_levels,
            max_player_level=self.fixed_levels,
            **kwargs,
        )

    def spawn_players(self, min_player_levels, max_player_levels):
        # Same placement rule as upstream (uniform empty cell), but no level permutation.
        for player, level in zip(self.players, self.fixed_levels):
            player.reward = 0
            for _ in range(1000):
                row = self.np_random.integers(0, self.rows)
                col = self.np_random.integers(0, self.cols)
                if self._is_empty_location(row, col):
                    player.setup((row, col), int(level), self.field_size)
                    break
            else:  # pragma: no cover - impossible on the validated grid sizes
                raise RuntimeError("Could not place an LBF player on an empty cell.")


class UpstreamLevelForaging(TypedParallelEnv):
    """Level-Based Foraging (vector observations) with persistent agent levels, on ``lbforaging``.

    Observation of each agent: ``(y, x, level)`` of each food (padded ``-1, -1, 0``), then
    ``(y, x, level)`` of each player, the agent itself first. Actions ``Discrete(6)``:
    NONE, NORTH, SOUTH, WEST, EAST, LOAD (an invalid action acts as NONE, as upstream).
    """

    metadata = {"name": "lbf_persistent_v0", "render_modes": []}

    #: env_config key -> default.
    DEFAULTS: dict[str, Any] = DEFAULTS

    def __init__(
        self,
        levels: Sequence[int] = (1, 1, 2, 2, 3, 3, 4, 4),
        grid_size: int = 10,
        foods: int = 4,
        max_food_level: int | None = None,
        sight: int | None = None,
        force_coop: bool = False,
        max_steps: int = 50,
        penalty: float = 0.0,
        normalize_reward: bool = True,
        observe_agent_levels: bool = True,
    ):
        self.levels = [int(level) for level in levels]
        self.possible_agents = agent_names(len(self.levels))
        self.agents: list[str] = []
        self._env = _FixedLevelForagingEnv(
            self.levels,
            min_food_level=1,
            max_food_level=max_food_level,
            field_size=(grid_size, grid_size),
            max_num_food=foods,
            sight=grid_size if sight is None else sight,
            max_episode_steps=max_steps,
            force_coop=force_coop,
            normalize_reward=normalize_reward,
            observe_agent_levels=observe_agent_levels,
            penalty=penalty,
        )
        obs_space = self._env.observation_space[0]
        self._observation_space = spaces.Box(
            obs_space.low, obs_space.high, obs_space.shape, np.float32
        )
        self._action_space = spaces.Discrete(6)
        distinct_levels = sorted(set(self.levels))
        self.true_agent_types = {
            agent: distinct_levels.index(level)
            for agent, level in zip(self.possible_agents, self.levels)
        }
        self.own_observation_features = own_observation_features(foods, observe_agent_levels)

    @classmethod
    def from_params(cls, params: LBFParams) -> "UpstreamLevelForaging":
        return cls(**asdict(params))

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any] | None = None) -> "UpstreamLevelForaging":
        """Validated constructor from an ``env_config`` dict (keys: ``DEFAULTS``); this class
        whatever ``implementation`` says."""
        params, _ = parse_env_config(env_config)
        return cls.from_params(params)

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def reset(self, seed: int | None = None, options: dict | None = None):
        observations, _ = self._env.reset(seed=seed)
        self.agents = list(self.possible_agents)
        return self._to_dict(observations), {agent: {} for agent in self.agents}

    def step(self, actions: Mapping[str, int]):
        joint_action = [int(actions.get(agent, 0)) for agent in self.possible_agents]
        observations, rewards, done, _, _ = self._env.step(joint_action)
        all_food_eaten = done and self._env.field.sum() == 0
        terminated = {agent: bool(all_food_eaten) for agent in self.possible_agents}
        truncated = {agent: bool(done and not all_food_eaten) for agent in self.possible_agents}
        obs = self._to_dict(observations)
        rewards = {agent: float(r) for agent, r in zip(self.possible_agents, rewards)}
        infos = {agent: {} for agent in self.possible_agents}
        if done:
            self.agents = []
        return obs, rewards, terminated, truncated, infos

    def _to_dict(self, observations) -> dict[str, np.ndarray]:
        return {
            agent: np.asarray(obs, dtype=np.float32)
            for agent, obs in zip(self.possible_agents, observations)
        }

    def close(self) -> None:
        self._env.close()
