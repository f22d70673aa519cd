"""Level-Based Foraging whose agents keep their level for the life of the env.

The installed ``lbforaging`` redraws and shuffles player levels at every reset, so an agent
has no stable identity; SePS/AdaPS cluster agents by identity and need levels that persist.
Here every agent gets one fixed level (given, or drawn once from ``level_seed``); positions and
food are still random per reset. The time limit is reported as a truncation.
"""

from __future__ import annotations

from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces
from lbforaging.foraging.environment import ForagingEnv

from rllib_adaps.envs.base import (
    EnvConfigError,
    TypedParallelEnv,
    agent_names,
    check_bool,
    check_float,
    check_int,
    check_keys,
)

ENV_NAME = "lbf"


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


class PersistentLevelForaging(TypedParallelEnv):
    """Level-Based Foraging (vector observations) with persistent agent levels.

    Observation of each agent: ``(y, x, level)`` of each food (padded ``-1, -1, 0``), then
    ``(y, x, level)`` of each player, the agent itself first. Actions ``Discrete(6)``:
    NONE, NORTH, SOUTH, WEST, EAST, LOAD (an invalid action acts as NONE, as upstream).
    """

    metadata = {"name": "lbf_persistent_v0", "render_modes": []}

    #: env_config key -> default.
    DEFAULTS: dict[str, Any] = {
        "grid_size": 10,
        "levels": None,
        "players": None,
        "min_player_level": 1,
        "max_player_level": 4,
        "level_seed": 0,
        "foods": 4,
        "max_food_level": None,
        "sight": None,
        "force_coop": False,
        "max_steps": 50,
        "penalty": 0.0,
        "normalize_reward": True,
        "observe_agent_levels": True,
    }

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

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any] | None = None) -> "PersistentLevelForaging":
        """Validated constructor from an ``env_config`` dict (keys: ``DEFAULTS``)."""
        env_config = dict(env_config or {})
        check_keys(ENV_NAME, env_config, cls.DEFAULTS)
        cfg = {**cls.DEFAULTS, **env_config}
        grid_size = check_int(ENV_NAME, "grid_size", cfg["grid_size"], 3, 100)
        foods = check_int(ENV_NAME, "foods", cfg["foods"], 1, grid_size * grid_size)
        levels = cls._resolve_levels(cfg)
        # Food needs a free ring around it: at most one food per 3x3 block of the interior.
        if len(levels) + foods > grid_size * grid_size:
            raise EnvConfigError(
                f"{ENV_NAME}: {len(levels)} players and {foods} foods do not fit on a "
                f"{grid_size}x{grid_size} grid; 'grid_size' must be larger."
            )
        sight = cfg["sight"]
        if sight is not None:
            sight = check_int(ENV_NAME, "sight", sight, 1, grid_size)
        max_food_level = cfg["max_food_level"]
        if max_food_level is not None:
            max_food_level = check_int(ENV_NAME, "max_food_level", max_food_level, 1)
        return cls(
            levels=levels,
            grid_size=grid_size,
            foods=foods,
            max_food_level=max_food_level,
            sight=sight,
            force_coop=check_bool(ENV_NAME, "force_coop", cfg["force_coop"]),
            max_steps=check_int(ENV_NAME, "max_steps", cfg["max_steps"], 1),
            penalty=check_float(ENV_NAME, "penalty", cfg["penalty"], 0.0),
            normalize_reward=check_bool(ENV_NAME, "normalize_reward", cfg["normalize_reward"]),
            observe_agent_levels=check_bool(
                ENV_NAME, "observe_agent_levels", cfg["observe_agent_levels"]
            ),
        )

    @staticmethod
    def _resolve_levels(cfg: Mapping[str, Any]) -> list[int]:
        """Levels as given, or drawn once from ``level_seed`` for ``players`` agents."""
        levels, players = cfg["levels"], cfg["players"]
        if levels is None and players is None:
            levels = [1, 1, 2, 2, 3, 3, 4, 4]
        if levels is not None:
            if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
                raise EnvConfigError(f"{ENV_NAME}: 'levels' must be a list of ints, got {levels!r}.")
            if players is not None and check_int(ENV_NAME, "players", players, 2, 64) != len(levels):
                raise EnvConfigError(
                    f"{ENV_NAME}: 'levels' has {len(levels)} entries but 'players' is "
                    f"{players}; give a level for every player (or leave 'players' out)."
                )
            check_int(ENV_NAME, "len(levels)", len(levels), 2, 64)
            return [check_int(ENV_NAME, "levels[i]", level, 1, 100) for level in levels]
        players = check_int(ENV_NAME, "players", players, 2, 64)
        low = check_int(ENV_NAME, "min_player_level", cfg["min_player_level"], 1, 100)
        high = check_int(ENV_NAME, "max_player_level", cfg["max_player_level"], low, 100)
        seed = check_int(ENV_NAME, "level_seed", cfg["level_seed"], 0)
        return np.random.default_rng(seed).integers(low, high + 1, size=players).tolist()

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
