"""Coloured Multi-Robot Warehouse (C-RWARE): RWARE where agents come in hidden colours.

Every agent and every shelf has one of ``C`` colours. Any agent may carry any shelf, but a
requested shelf only counts as delivered (and pays its deliverer +1) when the agent that
brings it to a goal has the shelf's colour; otherwise it stays requested. Each colour also
reads its own rotation of the action ids and its own fixed permutation of the observation
vector, so that agents of different colours need genuinely different policies, while the
colour itself is never observed: a shared policy has to infer it (the setting of the SePS /
AdaPS papers).

The movement, collision and loading rules are those of the installed ``rware`` package;
this module replaces only what colours change (deliveries, requests, observations).
"""

from __future__ import annotations

from typing import Any, Mapping

import gymnasium as gym
import numpy as np
from rware.warehouse import _LAYER_AGENTS, _LAYER_SHELFS, Action, Direction, RewardType, Warehouse

from rllib_adaps.envs.base import (
    EnvConfigError,
    TypedParallelEnv,
    agent_names,
    check_bool,
    check_choice,
    check_int,
    check_keys,
)

ENV_NAME = "crware"

#: Size name -> (shelf_rows, shelf_columns), as rware registers them (column height 8).
SIZES: dict[str, tuple[int, int]] = {
    "tiny": (1, 3),  # 11 x 10 grid, 32 shelves
    "small": (2, 3),  # 20 x 10 grid, 80 shelves
    "medium": (2, 5),  # 20 x 16 grid, 144 shelves
    "large": (3, 5),  # 29 x 16 grid, 224 shelves
}
COLUMN_HEIGHT = 8

#: Difficulty -> request queue length as a multiple of the number of agents (rware's rule).
DIFFICULTY_QUEUE_FACTOR: dict[str, float] = {"easy": 2.0, "normal": 1.0, "hard": 0.5}

#: Named tasks of the papers: name -> (size, n_agents, difficulty); all use 2 colours.
TASKS: dict[str, tuple[str, int, str]] = {
    "tiny-4ag": ("tiny", 4, "normal"),
    "tiny-4ag-hard": ("tiny", 4, "hard"),
    "small-8ag": ("small", 8, "normal"),
    "medium-16ag": ("medium", 16, "normal"),
}
TASK_N_COLOURS = 2
MAX_COLOURS = 4

N_ACTIONS = len(Action)
#: Self part of an observation: x, y, carrying, direction one-hot (4), on-highway.
SELF_FEATURES = 8
SENSOR_RANGE = 1
SENSOR_CELLS = (2 * SENSOR_RANGE + 1) ** 2

CONFIG_KEYS = (
    "task",
    "size",
    "n_agents",
    "n_colours",
    "difficulty",
    "max_steps",
    "permutation_seed",
    "permute_observations",
)


def colour_blocks(n_agents: int, n_colours: int) -> list[int]:
    """Agent colours in contiguous blocks; colour 0 also takes the remainder.

    ``colour_blocks(4, 2) == [0, 0, 1, 1]``, ``colour_blocks(5, 2) == [0, 0, 0, 1, 1]``.
    """
    per_colour = n_agents // n_colours
    counts = [per_colour] * n_colours
    counts[0] += n_agents % n_colours
    return [colour for colour, count in enumerate(counts) for _ in range(count)]


def request_queue_size(n_agents: int, difficulty: str) -> int:
    """rware's request queue length for ``n_agents``, at least one request."""
    return max(1, int(n_agents * DIFFICULTY_QUEUE_FACTOR[difficulty]))


def observation_size(n_colours: int) -> int:
    """Length of one agent's observation: self part plus (agent, colour one-hot, requested) per cell."""
    return SELF_FEATURES + SENSOR_CELLS * (n_colours + 2)


class _ColouredWarehouseCore(Warehouse):
    """rware's world with colour-aware deliveries, and without rware's own observations.

    rware's ``step`` moves agents, resolves collisions and loads/unloads shelves, then pays
    any requested shelf standing on a goal. We keep the first part and replace the second:
    the request queue is hidden from rware during its step (so it delivers nothing), and
    deliveries are then checked against colours here. rware's per-agent observations are
    skipped entirely, since :class:`ColouredWarehouse` builds its own for all agents at once.
    """

    def __init__(self, agent_colours: list[int], n_colours: int, **rware_kwargs: Any):
        super().__init__(**rware_kwargs)
        self.agent_colours = np.asarray(agent_colours, dtype=np.int64)
        self.n_colours = n_colours
        self.shelf_colours = np.zeros(0, dtype=np.int64)

    def _make_obs(self, agent):
        """Skipped: ColouredWarehouse observes all agents at once from the grid."""
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


class ColouredWarehouse(TypedParallelEnv):
    """C-RWARE as a PettingZoo ``ParallelEnv``: agents ``agent_0 .. agent_{N-1}``.

    Action ``a`` of an agent of colour ``c`` is rware's ``Action((a - c) mod 5)``. The
    observation (float32, length ``8 + 9 * (C + 2)``) is rware's self part (x, y, carrying,
    direction one-hot, on-highway) followed by, for each of the 9 cells around the agent:
    has-agent, the shelf's colour one-hot (zeros without a shelf), requested; the whole vector
    is then permuted by a fixed per-colour permutation (same in every process for the same
    ``permutation_seed``). Rewards are individual. The time limit is a truncation.
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
        size, n_agents, n_colours, difficulty = self._resolve_task(
            task, size, n_agents, n_colours, difficulty
        )
        size = check_choice(ENV_NAME, "size", size, list(SIZES))
        difficulty = check_choice(ENV_NAME, "difficulty", difficulty, list(DIFFICULTY_QUEUE_FACTOR))
        n_agents = check_int(ENV_NAME, "n_agents", n_agents, 1)
        n_colours = check_int(ENV_NAME, "n_colours", n_colours, 1, MAX_COLOURS)
        if n_colours > n_agents:
            raise EnvConfigError(
                f"{ENV_NAME}: 'n_colours' must be in [1, {min(MAX_COLOURS, n_agents)}] "
                f"(at most n_agents={n_agents}), got {n_colours}."
            )
        self.max_steps = check_int(ENV_NAME, "max_steps", max_steps, 1)
        self.permutation_seed = check_int(ENV_NAME, "permutation_seed", permutation_seed, 0)
        self.permute_observations = check_bool(ENV_NAME, "permute_observations", permute_observations)
        self.task = task
        self.size = size
        self.difficulty = difficulty
        self.n_colours = n_colours

        shelf_rows, shelf_columns = SIZES[size]
        self.agent_colours = colour_blocks(n_agents, n_colours)
        self.core = _ColouredWarehouseCore(
            agent_colours=self.agent_colours,
            n_colours=n_colours,
            shelf_columns=shelf_columns,
            column_height=COLUMN_HEIGHT,
            shelf_rows=shelf_rows,
            n_agents=n_agents,
            msg_bits=0,
            sensor_range=SENSOR_RANGE,
            request_queue_size=request_queue_size(n_agents, difficulty),
            max_inactivity_steps=None,
            max_steps=None,  # the time limit is ours, reported as truncation
            reward_type=RewardType.INDIVIDUAL,
        )
        self._check_agents_fit(n_agents)

        self.possible_agents = agent_names(n_agents)
        self.agents: list[str] = []
        self.true_agent_types = dict(zip(self.possible_agents, self.agent_colours))
        self.obs_size = observation_size(n_colours)
        self._colour_of_agent = np.asarray(self.agent_colours, dtype=np.int64)
        self._obs_index = self._observation_permutations()
        self._observation_spaces = self._make_observation_spaces()
        self._action_spaces = {agent: gym.spaces.Discrete(N_ACTIONS) for agent in self.possible_agents}
        self._build_lookup_tables()
        self._steps = 0

    # ------------------------------------------------------------------ construction

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]) -> "ColouredWarehouse":
        """The validated constructor that the RLlib registry calls with ``env_config``."""
        check_keys(ENV_NAME, env_config, CONFIG_KEYS)
        config = dict(env_config)
        return cls(config.pop("task", None), **config)

    @staticmethod
    def _resolve_task(task, size, n_agents, n_colours, difficulty):
        """A named task fixes size, agents, colours and difficulty; otherwise the defaults apply."""
        if task is None:
            return (
                "tiny" if size is None else size,
                4 if n_agents is None else n_agents,
                2 if n_colours is None else n_colours,
                "normal" if difficulty is None else difficulty,
            )
        check_choice(ENV_NAME, "task", task, list(TASKS))
        given = {"size": size, "n_agents": n_agents, "n_colours": n_colours, "difficulty": difficulty}
        clashes = [key for key, value in given.items() if value is not None]
        if clashes:
            raise EnvConfigError(
                f"{ENV_NAME}: 'task' ({task!r}) already sets size, n_agents, n_colours and "
                f"difficulty; drop {clashes} or drop 'task'."
            )
        task_size, task_agents, task_difficulty = TASKS[task]
        return task_size, task_agents, TASK_N_COLOURS, task_difficulty

    def _check_agents_fit(self, n_agents: int) -> None:
        """Agents need distinct spawn cells, and the request queue must leave a shelf to refill from."""
        n_cells = self.core.grid_size[0] * self.core.grid_size[1]
        n_shelves = int((self.core.highways == 0).sum())
        max_agents = max(
            (n for n in range(1, n_cells + 1) if request_queue_size(n, self.difficulty) < n_shelves),
            default=0,
        )
        if n_agents > max_agents:
            raise EnvConfigError(
                f"{ENV_NAME}: 'n_agents' must be in [1, {max_agents}] for size {self.size!r} "
                f"with difficulty {self.difficulty!r} ({n_shelves} shelves), got {n_agents}."
            )

    def _observation_permutations(self) -> np.ndarray:
        """Row ``i``: the gather index that builds agent ``i``'s observation from the plain one.

        One permutation per colour, drawn from ``permutation_seed`` alone, so every process
        (and every reset) agrees on it.
        """
        if self.permute_observations:
            rng = np.random.default_rng(self.permutation_seed)
            per_colour = np.stack([rng.permutation(self.obs_size) for _ in range(self.n_colours)])
        else:
            per_colour = np.tile(np.arange(self.obs_size), (self.n_colours, 1))
        return per_colour[self._colour_of_agent]

    def _make_observation_spaces(self) -> dict[str, gym.spaces.Box]:
        """Box per agent; coordinates are bounded by the grid, every other entry is a bit."""
        height, width = self.core.grid_size
        high = np.ones(self.obs_size, dtype=np.float32)
        high[0], high[1] = width - 1, height - 1
        return {
            agent: gym.spaces.Box(
                low=np.zeros(self.obs_size, dtype=np.float32),
                high=high[self._obs_index[i]],
                dtype=np.float32,
            )
            for i, agent in enumerate(self.possible_agents)
        }

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
        n_shelves = len(self.core.shelfs)
        self._shelf_features = np.zeros((n_shelves + 1, self.n_colours + 1), dtype=np.float32)
        self._shelf_features[np.arange(1, n_shelves + 1), self.core.shelf_colours] = 1.0
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

    # ------------------------------------------------------------------ internals

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
