"""C-RWARE on the installed ``rware`` engine (``env_config["implementation"] = "upstream"``).

rware's own ``Warehouse`` moves the agents, resolves collisions and loads/unloads shelves;
this module adds only what colours change (deliveries, requests, observations). It is slow
(rware resolves collisions with networkx every step), and kept as an option and as the
reference that :mod:`rllib_adaps.envs.coloured_rware`'s numpy implementation is tested
against, step for step.
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from rware.warehouse import _LAYER_AGENTS, _LAYER_SHELFS, Action, Direction, RewardType, Warehouse

from rllib_adaps.envs.base import TypedParallelEnv, agent_names
from rllib_adaps.envs.coloured_rware import (
    COLUMN_HEIGHT,
    ENV_NAME,
    N_ACTIONS,
    SELF_FEATURES,
    SENSOR_CELLS,
    SENSOR_RANGE,
    SIZES,
    CRWAREParams,
    WorldState,
    split_config,
)


class _ColouredWarehouseCore(Warehouse):
    """rware's world with colour-aware deliveries, and without rware's own observations.

    rware's ``step`` moves agents, resolves collisions and loads/unloads shelves, then pays
    any requested shelf standing on a goal. We keep the first part and replace the second:
    the request queue is hidden from rware during its step (so it delivers nothing), and
    deliveries are then checked against colours here. rware's per-agent observations are
    skipped entirely, since :class:`UpstreamColouredWarehouse` builds its own for all agents
    at once.
    """

    def __init__(self, agent_colours: list[int], n_colours: int, **rware_kwargs: Any):
        super().__init__(**rware_kwargs)
        self.agent_colours = np.asarray(agent_colours, dtype=np.int64)
        self.n_colours = n_colours
        self.shelf_colours = np.zeros(0, dtype=np.int64)

    def _make_obs(self, agent):
        """Skipped: UpstreamColouredWarehouse observes all agents at once from the grid."""
        return None

    def reset(self, seed: int | None = None, options: dict | None = None):
        """rware's reset (agents, directions, requests), then fresh shelf colours.

        All draws use ``self.np_random``, which rware reseeds when ``seed`` is given.
        """
        super().reset(seed=seed, options=options)
        self.shelf_colours = self.np_random.integers(self.n_colours, size=len(self.shelfs))

    def step(self, raw_actions: list[int]) -> np.ndarray:
        """Moves the world one step under rware's rules; returns each agent's delivery reward."""
        request_queue, self.request_queue = self.request_queue, []
        try:
            super().step(raw_actions)
        finally:
            self.request_queue = request_queue
        return self._deliver_matching_colours()

    def requested_shelf_ids(self) -> np.ndarray:
        """Ids (1-based, as on rware's grid) of the currently requested shelves."""
        return np.fromiter((shelf.id for shelf in self.request_queue), np.int64, len(self.request_queue))

    def _deliver_matching_colours(self) -> np.ndarray:
        """Pays +1 to each agent standing on a goal with a requested shelf of its own colour.

        All deliveries of the step are decided first and their replacements drawn after, so
        a replacement request can never be "delivered" on the spot by a second goal.
        """
        rewards = np.zeros(self.n_agents, dtype=np.float64)
        requested = set(self.requested_shelf_ids().tolist())
        delivered = []
        for goal_x, goal_y in self.goals:
            shelf_id = int(self.grid[_LAYER_SHELFS, goal_y, goal_x])
            agent_id = int(self.grid[_LAYER_AGENTS, goal_y, goal_x])
            if not shelf_id or not agent_id or shelf_id not in requested:
                continue
            if self.shelf_colours[shelf_id - 1] != self.agent_colours[agent_id - 1]:
                continue  # wrong colour: no reward, the shelf stays requested
            rewards[agent_id - 1] += 1.0
            delivered.append(shelf_id)
        for shelf_id in delivered:
            self._replace_request(shelf_id)
        return rewards

    def _replace_request(self, shelf_id: int) -> None:
        """Swaps a delivered shelf in the queue for a random shelf not requested yet (rware's rule)."""
        free = np.ones(len(self.shelfs), dtype=bool)
        free[self.requested_shelf_ids() - 1] = False
        new_index = int(self.np_random.choice(np.flatnonzero(free)))
        slot = next(i for i, shelf in enumerate(self.request_queue) if shelf.id == shelf_id)
        self.request_queue[slot] = self.shelfs[new_index]


class UpstreamColouredWarehouse(TypedParallelEnv):
    """C-RWARE as a PettingZoo ``ParallelEnv`` on rware's engine: agents ``agent_0 .. agent_{N-1}``.

    Same spaces, rules and random draws as :class:`rllib_adaps.envs.coloured_rware.ColouredWarehouse`
    (see there); one env per instance, stepped through rware's objects.
    """

    metadata = {"name": "coloured_rware_v0", "render_modes": []}

    def __init__(
        self,
        task: str | None = None,
        *,
        size: str | None = None,
        n_agents: int | None = None,
        n_colours: int | None = None,
        difficulty: str | None = None,
        max_steps: int = 500,
        permutation_seed: int = 0,
        permute_observations: bool = True,
    ):
        self.params = params = CRWAREParams.build(
            task,
            size=size,
            n_agents=n_agents,
            n_colours=n_colours,
            difficulty=difficulty,
            max_steps=max_steps,
            permutation_seed=permutation_seed,
            permute_observations=permute_observations,
        )
        self.max_steps = params.max_steps
        self.permutation_seed = params.permutation_seed
        self.permute_observations = params.permute_observations
        self.task = params.task
        self.size = params.size
        self.difficulty = params.difficulty
        self.n_colours = params.n_colours

        shelf_rows, shelf_columns = SIZES[params.size]
        self.agent_colours = params.agent_colours
        self.core = _ColouredWarehouseCore(
            agent_colours=self.agent_colours,
            n_colours=params.n_colours,
            shelf_columns=shelf_columns,
            column_height=COLUMN_HEIGHT,
            shelf_rows=shelf_rows,
            n_agents=params.n_agents,
            msg_bits=0,
            sensor_range=SENSOR_RANGE,
            request_queue_size=params.queue_size,
            max_inactivity_steps=None,
            max_steps=None,  # the time limit is ours, reported as truncation
            reward_type=RewardType.INDIVIDUAL,
        )
        self.grid_size = self.core.grid_size
        self.goals = [tuple(goal) for goal in self.core.goals]

        self.possible_agents = agent_names(params.n_agents)
        self.agents: list[str] = []
        self.true_agent_types = dict(zip(self.possible_agents, self.agent_colours))
        self.obs_size = params.obs_size
        self._colour_of_agent = np.asarray(self.agent_colours, dtype=np.int64)
        self._obs_index = params.observation_permutations()[self._colour_of_agent]
        self._observation_spaces = params.observation_spaces()
        self._action_spaces = {agent: gym.spaces.Discrete(N_ACTIONS) for agent in self.possible_agents}
        self._build_lookup_tables()
        self._steps = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]) -> "UpstreamColouredWarehouse":
        """The validated constructor; ``implementation`` may be given but only as ``"upstream"``."""
        implementation, config = split_config(env_config)
        if implementation != "upstream":
            raise ValueError(
                f"{ENV_NAME}: UpstreamColouredWarehouse.from_config got implementation={implementation!r}; "
                "use ColouredWarehouse.from_config to choose."
            )
        return cls(config.pop("task", None), **config)

    def _build_lookup_tables(self) -> None:
        """Fixed arrays that let one observation call serve all agents without per-cell loops."""
        height, width = self.core.grid_size
        pad = SENSOR_RANGE
        self._padded_grid = np.zeros((2, height + 2 * pad, width + 2 * pad), dtype=np.int32)
        window = np.arange(2 * pad + 1)
        # Row-major over the window, top-left first (rware's cell order), in padded coordinates.
        self._window_dy = np.repeat(window, 2 * pad + 1)
        self._window_dx = np.tile(window, 2 * pad + 1)
        self._direction_one_hot = np.eye(len(Direction), dtype=np.float32)
        self._highways = self.core.highways.astype(np.float32)
        self._agent_rows = np.arange(len(self.possible_agents))[:, None]
        # Per shelf id (row 0 = no shelf): colour one-hot, then requested.
        self._shelf_features = np.zeros((1, self.n_colours + 1), dtype=np.float32)

    @property
    def observation_permutations(self) -> np.ndarray:
        """Row ``c``: the gather index of colour ``c`` (``obs = plain_obs[row]``)."""
        first_agent_of_colour = [self.agent_colours.index(c) for c in range(self.n_colours)]
        return self._obs_index[first_agent_of_colour].copy()

    # ------------------------------------------------------------------ PettingZoo API

    def observation_space(self, agent: str) -> gym.spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> gym.spaces.Discrete:
        return self._action_spaces[agent]

    def reset(self, seed: int | None = None, options: dict | None = None):
        """New episode: agent placement, requests and shelf colours all from the seeded generator."""
        self.core.reset(seed=seed)
        self._refresh_shelf_features()
        self._steps = 0
        self.agents = list(self.possible_agents)
        return self._observe(), {agent: {} for agent in self.possible_agents}

    def step(self, actions: Mapping[str, Any]):
        """Rotates each agent's action by its colour, runs rware's dynamics, pays coloured deliveries."""
        if not self.agents:
            raise RuntimeError(f"{ENV_NAME}: step() called on a finished episode; call reset() first.")
        delivery_rewards = self.core.step(self._raw_actions(actions))
        self._steps += 1
        out_of_time = self._steps >= self.max_steps
        observations = self._observe()
        rewards = dict(zip(self.possible_agents, delivery_rewards.tolist()))
        terminations = {agent: False for agent in self.possible_agents}
        truncations = {agent: out_of_time for agent in self.possible_agents}
        infos = {agent: {} for agent in self.possible_agents}
        if out_of_time:
            self.agents = []
        return observations, rewards, terminations, truncations, infos

    def render(self):
        raise NotImplementedError(f"{ENV_NAME}: rendering is not supported.")

    def close(self):
        self.core.close()

    # ------------------------------------------------------------------ state access

    def world_state(self) -> WorldState:
        """The world in plain arrays (shelf indices are rware ids - 1)."""
        core = self.core
        return WorldState(
            agent_x=np.array([int(a.x) for a in core.agents], dtype=np.int64),
            agent_y=np.array([int(a.y) for a in core.agents], dtype=np.int64),
            agent_dir=np.array([a.dir.value for a in core.agents], dtype=np.int64),
            carrying=np.array(
                [a.carrying_shelf.id - 1 if a.carrying_shelf is not None else -1 for a in core.agents],
                dtype=np.int64,
            ),
            shelf_x=np.array([int(s.x) for s in core.shelfs], dtype=np.int64),
            shelf_y=np.array([int(s.y) for s in core.shelfs], dtype=np.int64),
            shelf_colours=np.asarray(core.shelf_colours, dtype=np.int64).copy(),
            request_queue=core.requested_shelf_ids() - 1,
            steps=self._steps,
        )

    def set_world_state(self, state: WorldState) -> None:
        """Puts ``state`` into rware's objects (carried shelves follow their carriers)."""
        core = self.core
        for shelf, x, y in zip(core.shelfs, state.shelf_x.tolist(), state.shelf_y.tolist()):
            shelf.x, shelf.y = x, y
        for agent, x, y, d, held in zip(
            core.agents,
            state.agent_x.tolist(),
            state.agent_y.tolist(),
            state.agent_dir.tolist(),
            state.carrying.tolist(),
        ):
            agent.x, agent.y, agent.dir = x, y, Direction(d)
            agent.carrying_shelf = core.shelfs[held] if held >= 0 else None
            if agent.carrying_shelf is not None:
                agent.carrying_shelf.x, agent.carrying_shelf.y = x, y
        core.shelf_colours = np.asarray(state.shelf_colours, dtype=np.int64).copy()
        core.request_queue = [core.shelfs[i] for i in state.request_queue.tolist()]
        self._steps = int(state.steps)
        core._recalc_grid()
        self._refresh_shelf_features()

    # ------------------------------------------------------------------ internals

    def _refresh_shelf_features(self) -> None:
        n_shelves = len(self.core.shelfs)
        self._shelf_features = np.zeros((n_shelves + 1, self.n_colours + 1), dtype=np.float32)
        self._shelf_features[np.arange(1, n_shelves + 1), self.core.shelf_colours] = 1.0

    def _raw_actions(self, actions: Mapping[str, Any]) -> list[int]:
        """rware action ids for all agents; an agent without an action stands still (rware NOOP)."""
        raw = []
        for agent, colour in zip(self.possible_agents, self.agent_colours):
            if agent not in actions:
                raw.append(Action.NOOP.value)
                continue
            action = int(actions[agent])
            if not 0 <= action < N_ACTIONS:
                raise ValueError(
                    f"{ENV_NAME}: action of {agent} must be in [0, {N_ACTIONS - 1}], got {action}."
                )
            raw.append((action - colour) % N_ACTIONS)
        return raw

    def _observe(self) -> dict[str, np.ndarray]:
        """All agents' observations in one pass over numpy arrays (rware builds them cell by cell)."""
        core = self.core
        state = np.array(
            [(a.x, a.y, a.carrying_shelf is not None, a.dir.value) for a in core.agents],
            dtype=np.int64,
        )
        xs, ys = state[:, 0], state[:, 1]
        n_agents = len(state)

        self._shelf_features[:, -1] = 0.0
        self._shelf_features[core.requested_shelf_ids(), -1] = 1.0
        pad = SENSOR_RANGE
        self._padded_grid[:, pad:-pad, pad:-pad] = core.grid
        rows = ys[:, None] + self._window_dy  # (agents, cells), padded coordinates
        cols = xs[:, None] + self._window_dx
        has_agent = self._padded_grid[_LAYER_AGENTS][rows, cols] > 0
        shelf_ids = self._padded_grid[_LAYER_SHELFS][rows, cols]

        obs = np.empty((n_agents, self.obs_size), dtype=np.float32)
        obs[:, 0] = xs
        obs[:, 1] = ys
        obs[:, 2] = state[:, 2]
        obs[:, 3:7] = self._direction_one_hot[state[:, 3]]
        obs[:, 7] = self._highways[ys, xs]
        cells = obs[:, SELF_FEATURES:].reshape(n_agents, SENSOR_CELLS, self.n_colours + 2)
        cells[:, :, 0] = has_agent
        cells[:, :, 1:] = self._shelf_features[shelf_ids]
        obs = obs[self._agent_rows, self._obs_index]
        return dict(zip(self.possible_agents, obs))
