"""Coloured Multi-Robot Warehouse (C-RWARE): RWARE where agents come in hidden colours.

Every agent and every shelf has one of ``C`` colours. Any agent may carry any shelf, but a
requested shelf only counts as delivered (and pays its deliverer +1) when the agent that
brings it to a goal has the shelf's colour; otherwise it stays requested. Each colour also
reads its own rotation of the action ids and its own fixed permutation of the observation
vector, so that agents of different colours need genuinely different policies, while the
colour itself is never observed: a shared policy has to infer it (the setting of the SePS /
AdaPS papers).

Two implementations share this module's configuration (``env_config["implementation"]``):

- ``"numpy"`` (default): :class:`ColouredWarehouseBatch` holds ``C`` copies of the world as
  arrays and steps them in one call (:class:`ColouredWarehouse` is one copy of it as a
  PettingZoo env). It replays the installed ``rware`` 2.0.0 rules and random draws exactly:
  the same seed gives the same episode, step for step, as the upstream-based env.
- ``"upstream"``: :class:`~rllib_adaps.envs.coloured_rware_upstream.UpstreamColouredWarehouse`,
  rware's own ``Warehouse`` with colours added on top (slow; the reference for tests).

rware's rules, as replayed here. An agent's target is the next cell ahead for FORWARD (clamped
to the grid, so walking into the wall is a FORWARD that stays), its own cell otherwise. A
shelf-carrying agent whose target holds a standing shelf (a shelf not carried by an agent
there) cancels its move. Collisions: the start -> target edges of all agents form a graph on
cells with one out-edge per agent; in each weakly connected component, if there is a cycle
its agents move (a 2-cycle, a swap, moves nobody; a self-loop is an agent standing still) and
everybody else in the component stays; without a cycle the agents on the longest path into
the component's empty target cell move and the others stay. TOGGLE_LOAD picks up the shelf
under an empty-handed agent, or puts the carried shelf down unless the agent is on a highway.
"""

from __future__ import annotations

import functools
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

#: rware's action ids (``rware.warehouse.Action``) and direction ids (``Direction``).
NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD = range(5)
UP, DOWN, DIR_LEFT, DIR_RIGHT = range(4)
N_ACTIONS = 5
N_DIRECTIONS = 4
#: Self part of an observation: x, y, carrying, direction one-hot (4), on-highway.
SELF_FEATURES = 8
SENSOR_RANGE = 1
SENSOR_CELLS = (2 * SENSOR_RANGE + 1) ** 2

IMPLEMENTATIONS = ("numpy", "upstream")

CONFIG_KEYS = (
    "task",
    "size",
    "n_agents",
    "n_colours",
    "difficulty",
    "max_steps",
    "permutation_seed",
    "permute_observations",
    "implementation",
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


@dataclass(frozen=True)
class Layout:
    """rware's warehouse built from parameters: grid size (height, width), highways, goals."""

    grid_size: tuple[int, int]
    highways: np.ndarray  # uint8 [height, width], 1 on corridors and goals
    goals: tuple[tuple[int, int], ...]  # (x, y), in rware's order

    @property
    def shelf_cells(self) -> tuple[np.ndarray, np.ndarray]:
        """(x, y) of every shelf's home cell, in rware's shelf id order (row-major)."""
        ys, xs = np.nonzero(self.highways == 0)
        return xs, ys


@functools.lru_cache(maxsize=None)
def warehouse_layout(size: str) -> Layout:
    """rware's ``_make_layout_from_params`` for a named size (column height 8)."""
    shelf_rows, shelf_columns = SIZES[size]
    height = (COLUMN_HEIGHT + 1) * shelf_rows + 2
    width = 3 * shelf_columns + 1
    ys, xs = np.indices((height, width))
    queue_columns = (xs == width // 2 - 1) | (xs == width // 2)
    highways = (
        (xs % 3 == 0)
        | (ys % (COLUMN_HEIGHT + 1) == 0)
        | (ys == height - 1)
        | ((ys > height - (COLUMN_HEIGHT + 3)) & queue_columns)
    ).astype(np.uint8)
    highways.setflags(write=False)
    goals = ((width // 2 - 1, height - 1), (width // 2, height - 1))
    return Layout((height, width), highways, goals)


@dataclass(frozen=True)
class CRWAREParams:
    """Validated C-RWARE settings: the one home for checking ``env_config``."""

    task: str | None
    size: str
    n_agents: int
    n_colours: int
    difficulty: str
    max_steps: int
    permutation_seed: int
    permute_observations: bool

    @classmethod
    def build(
        cls,
        task: str | None = None,
        *,
        size: str | None = None,
        n_agents: int | None = None,
        n_colours: int | None = None,
        difficulty: str | None = None,
        max_steps: int = 500,
        permutation_seed: int = 0,
        permute_observations: bool = True,
    ) -> "CRWAREParams":
        size, n_agents, n_colours, difficulty = _resolve_task(task, size, n_agents, n_colours, difficulty)
        size = check_choice(ENV_NAME, "size", size, list(SIZES))
        difficulty = check_choice(ENV_NAME, "difficulty", difficulty, list(DIFFICULTY_QUEUE_FACTOR))
        n_agents = check_int(ENV_NAME, "n_agents", n_agents, 1)
        n_colours = check_int(ENV_NAME, "n_colours", n_colours, 1, MAX_COLOURS)
        if n_colours > n_agents:
            raise EnvConfigError(
                f"{ENV_NAME}: 'n_colours' must be in [1, {min(MAX_COLOURS, n_agents)}] "
                f"(at most n_agents={n_agents}), got {n_colours}."
            )
        params = cls(
            task=task,
            size=size,
            n_agents=n_agents,
            n_colours=n_colours,
            difficulty=difficulty,
            max_steps=check_int(ENV_NAME, "max_steps", max_steps, 1),
            permutation_seed=check_int(ENV_NAME, "permutation_seed", permutation_seed, 0),
            permute_observations=check_bool(ENV_NAME, "permute_observations", permute_observations),
        )
        params._check_agents_fit()
        return params

    @property
    def layout(self) -> Layout:
        return warehouse_layout(self.size)

    @property
    def agent_colours(self) -> list[int]:
        return colour_blocks(self.n_agents, self.n_colours)

    @property
    def queue_size(self) -> int:
        return request_queue_size(self.n_agents, self.difficulty)

    @property
    def n_shelves(self) -> int:
        return int((self.layout.highways == 0).sum())

    @property
    def obs_size(self) -> int:
        return observation_size(self.n_colours)

    def _check_agents_fit(self) -> None:
        """Agents need distinct spawn cells, and the request queue must leave a shelf to refill from."""
        height, width = self.layout.grid_size
        n_shelves = self.n_shelves
        max_agents = max(
            (n for n in range(1, height * width + 1) if request_queue_size(n, self.difficulty) < n_shelves),
            default=0,
        )
        if self.n_agents > max_agents:
            raise EnvConfigError(
                f"{ENV_NAME}: 'n_agents' must be in [1, {max_agents}] for size {self.size!r} "
                f"with difficulty {self.difficulty!r} ({n_shelves} shelves), got {self.n_agents}."
            )

    def observation_permutations(self) -> np.ndarray:
        """Row ``c``: the gather index of colour ``c`` (``obs = plain_obs[row]``).

        One permutation per colour, drawn from ``permutation_seed`` alone, so every process
        (and every reset) agrees on it.
        """
        if self.permute_observations:
            rng = np.random.default_rng(self.permutation_seed)
            return np.stack([rng.permutation(self.obs_size) for _ in range(self.n_colours)])
        return np.tile(np.arange(self.obs_size), (self.n_colours, 1))

    def observation_spaces(self) -> dict[str, spaces.Box]:
        """Box per agent; coordinates are bounded by the grid, every other entry is a bit."""
        height, width = self.layout.grid_size
        high = np.ones(self.obs_size, dtype=np.float32)
        high[0], high[1] = width - 1, height - 1
        per_colour = self.observation_permutations()
        return {
            agent: spaces.Box(
                low=np.zeros(self.obs_size, dtype=np.float32),
                high=high[per_colour[colour]],
                dtype=np.float32,
            )
            for agent, colour in zip(agent_names(self.n_agents), self.agent_colours)
        }


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


def split_config(env_config: Mapping[str, Any]) -> tuple[str, dict[str, Any]]:
    """Checks the keys of ``env_config``; returns (implementation, constructor keywords)."""
    check_keys(ENV_NAME, env_config, CONFIG_KEYS)
    config = dict(env_config)
    implementation = check_choice(ENV_NAME, "implementation", config.pop("implementation", "numpy"), IMPLEMENTATIONS)
    return implementation, config


@dataclass
class WorldState:
    """One world's full state, in plain arrays (for tests, debugging and cross-checks).

    Shelves are 0-based indices in rware's id order (rware id = index + 1); ``carrying`` is the
    carried shelf's index or -1; ``request_queue`` lists the requested shelves in queue order.
    """

    agent_x: np.ndarray
    agent_y: np.ndarray
    agent_dir: np.ndarray
    carrying: np.ndarray
    shelf_x: np.ndarray
    shelf_y: np.ndarray
    shelf_colours: np.ndarray
    request_queue: np.ndarray
    steps: int

    def copy(self) -> "WorldState":
        return WorldState(**{k: (v.copy() if isinstance(v, np.ndarray) else v) for k, v in vars(self).items()})

    def equals(self, other: "WorldState") -> bool:
        return all(np.array_equal(getattr(self, k), getattr(other, k)) for k in vars(self))


class ColouredWarehouseBatch(BatchedEnv):
    """``num_copies`` C-RWARE worlds as arrays with a leading copy axis, stepped in one call.

    Cells are flat indices into the grid padded by one cell on every side (``p = (y + 1) *
    (width + 2) + x + 1``), so an agent's 3 x 3 sensor window is a fixed set of offsets. The
    grids ``agent_grid`` and ``shelf_grid`` (``[C, cells]``: agent / shelf index + 1, 0 if
    empty) are kept in step with positions incrementally.
    """

    name = ENV_NAME

    def __init__(self, params: CRWAREParams, num_copies: int):
        self.params = params
        self.num_copies = C = num_copies
        self.num_agents = N = params.n_agents
        self.n_colours = params.n_colours
        self.possible_agents = agent_names(N)
        self.agent_colours = np.asarray(params.agent_colours, dtype=np.int64)
        self.true_agent_types = dict(zip(self.possible_agents, params.agent_colours))
        self.idle_actions = (NOOP + self.agent_colours) % N_ACTIONS
        self.obs_size = D = params.obs_size
        self._observation_spaces = params.observation_spaces()
        self._action_space = spaces.Discrete(N_ACTIONS)

        layout = params.layout
        self.grid_size = (H, W) = layout.grid_size
        self.goals = layout.goals
        self._pw = PW = W + 2
        self._cells = P = (H + 2) * PW
        shelf_x, shelf_y = layout.shelf_cells
        self.num_shelves = S = len(shelf_x)
        self.queue_size = params.queue_size
        self._shelf_home = (shelf_y + 1) * PW + shelf_x + 1

        # Cell tables (padded cells; the border cells are never occupied).
        padded_x = np.arange(P) % PW - 1
        padded_y = np.arange(P) // PW - 1
        fwd = np.empty((P, N_DIRECTIONS), dtype=np.int64)
        fwd[:, UP] = (np.maximum(padded_y - 1, 0) + 1) * PW + padded_x + 1
        fwd[:, DOWN] = (np.minimum(padded_y + 1, H - 1) + 1) * PW + padded_x + 1
        fwd[:, DIR_LEFT] = (padded_y + 1) * PW + np.maximum(padded_x - 1, 0) + 1
        fwd[:, DIR_RIGHT] = (padded_y + 1) * PW + np.minimum(padded_x + 1, W - 1) + 1
        self._forward = fwd.ravel()  # [cell * 4 + dir]
        highway = np.zeros(P, dtype=bool)
        highway.reshape(H + 2, PW)[1:-1, 1:-1] = layout.highways.astype(bool)
        self._highway = highway
        self._goal_cells = np.array([(y + 1) * PW + x + 1 for x, y in layout.goals], dtype=np.int64)
        # rware's turns: RIGHT is clockwise in [UP, RIGHT, DOWN, LEFT].
        clockwise = [UP, DIR_RIGHT, DOWN, DIR_LEFT]
        turn = np.tile(np.arange(N_DIRECTIONS)[:, None], (1, N_ACTIONS))
        for d in range(N_DIRECTIONS):
            turn[d, RIGHT] = clockwise[(clockwise.index(d) + 1) % 4]
            turn[d, LEFT] = clockwise[(clockwise.index(d) - 1) % 4]
        self._turn = turn.ravel()  # [dir * 5 + raw action]
        # Raw rware action of every (agent, action id): colours rotate the ids.
        self._raw_of = ((np.arange(N_ACTIONS)[None, :] - self.agent_colours[:, None]) % N_ACTIONS).ravel()
        self._raw_row = (np.arange(N) * N_ACTIONS)[None, :]

        # Observation tables. Self part by (cell, dir, carrying): x, y, carrying, dir one-hot, highway.
        self_table = np.zeros((P, N_DIRECTIONS, 2, SELF_FEATURES), dtype=np.float32)
        self_table[..., 0] = padded_x[:, None, None]
        self_table[..., 1] = padded_y[:, None, None]
        self_table[..., 2] = np.arange(2)[None, None, :]
        self_table[..., 3:7] = np.eye(N_DIRECTIONS, dtype=np.float32)[None, :, None, :]
        self_table[..., 7] = highway[:, None, None]
        self._self_table = self_table.reshape(-1, SELF_FEATURES)
        # A cell by code = 2 * shelf code + has-agent; shelf code 0: none, 1 + colour + C * requested.
        n_codes = 1 + 2 * self.n_colours
        cell_table = np.zeros((n_codes, 2, self.n_colours + 2), dtype=np.float32)
        cell_table[:, 1, 0] = 1.0
        for colour in range(self.n_colours):
            for requested in (0, 1):
                code = 1 + colour + self.n_colours * requested
                cell_table[code, :, 1 + colour] = 1.0
                cell_table[code, :, -1] = requested
        self._cell_table = cell_table.reshape(2 * n_codes, -1)
        window = np.arange(-SENSOR_RANGE, SENSOR_RANGE + 1)
        self._window = (window[:, None] * PW + window[None, :]).ravel()  # row-major, top-left first
        per_colour = params.observation_permutations()
        self.observation_permutations_by_colour = per_colour
        agent_perm = per_colour[self.agent_colours]  # [N, D]
        self._obs_gather = (np.arange(N)[:, None] * D + agent_perm).ravel()  # into a flat [N * D] row

        # Copy-axis offsets for flat indexing.
        self._cell_base = (np.arange(C) * P)[:, None]
        self._agent_base = (np.arange(C) * N)[:, None]
        self._cell_base_flat = np.repeat(np.arange(C) * P, N)
        self._shelf_base = (np.arange(C) * (S + 1))[:, None]
        self._all_agents = np.arange(C * N)
        self._depth_rounds = max(1, int(np.ceil(np.log2(max(N, 2)))))
        self._scratch = np.zeros(C * P, dtype=np.int64)

        # State.
        self._generators = [seeded_generator(None) for _ in range(C)]
        self.cell = np.zeros((C, N), dtype=np.int64)
        self.dir = np.zeros((C, N), dtype=np.int64)
        self.carrying = np.full((C, N), -1, dtype=np.int64)
        self.shelf_cell = np.tile(self._shelf_home, (C, 1))
        self.shelf_colours = np.zeros((C, S), dtype=np.int64)
        self.queue = np.zeros((C, self.queue_size), dtype=np.int64)
        self.requested = np.zeros((C, S), dtype=bool)
        self.steps = np.zeros(C, dtype=np.int64)
        self.agent_grid = np.zeros((C, P), dtype=np.int64)
        self.shelf_grid = np.zeros((C, P), dtype=np.int64)
        self._shelf_code = np.zeros((C, S + 1), dtype=np.int64)
        self._obs: np.ndarray | None = None
        #: Counters of the rare paths (for tests and benchmarks).
        self.tie_fallbacks = 0
        self.delivery_steps = 0
        for copy in range(C):
            self._rebuild_copy(copy)

    # ------------------------------------------------------------------ BatchedEnv API

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_spaces[agent]

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    def reset_copies(self, copies: np.ndarray, seeds: Sequence[int | None]) -> None:
        """rware's reset draws (agent cells, directions, requests), then shelf colours, per copy."""
        H, W = self.grid_size
        N, S, Q = self.num_agents, self.num_shelves, self.queue_size
        for copy, seed in zip(np.asarray(copies).tolist(), seeds):
            if seed is not None:
                self._generators[copy] = seeded_generator(seed)
            rng = self._generators[copy]
            locations = rng.choice(np.arange(H * W), size=N, replace=False)
            ys, xs = np.unravel_index(locations, (H, W))
            self.cell[copy] = (ys + 1) * self._pw + xs + 1
            self.dir[copy] = rng.choice(N_DIRECTIONS, size=N)
            self.queue[copy] = rng.choice(S, size=Q, replace=False)
            self.shelf_colours[copy] = rng.integers(self.n_colours, size=S)
            self.carrying[copy] = -1
            self.shelf_cell[copy] = self._shelf_home
            self.steps[copy] = 0
            self._rebuild_copy(copy)
        self._obs = None

    def step_copies(self, actions: np.ndarray, active: np.ndarray):
        C = self.num_copies
        raw = self._raw_of[actions + self._raw_row]
        all_active = bool(active.all())
        if not all_active:
            raw[~active] = NOOP
        cell, direction, carrying = self.cell, self.dir, self.carrying

        target = np.where(raw == FORWARD, self._forward[cell * 4 + direction], cell)
        moving = target != cell
        move_ok = None
        if moving.any():
            target_g = target + self._cell_base
            occupant = self.agent_grid.ravel()[target_g]  # agent index + 1 at the target, 0 if none
            occupant_g = occupant - 1 + self._agent_base
            carriers = moving & (carrying >= 0)
            if carriers.any():
                # A carried shelf cannot enter a cell with a standing shelf (one not carried by
                # the agent there): rware cancels that move.
                shelf_there = self.shelf_grid.ravel()[target_g] > 0
                occupant_carries = (occupant > 0) & (carrying.ravel()[np.maximum(occupant_g, 0)] >= 0)
                moving &= ~(carriers & shelf_there & ~occupant_carries)
            move_ok = self._resolve_collisions(moving, target, occupant, occupant_g, raw)

        # Loading and unloading read the grid as it was at the start of the step.
        toggles = raw == TOGGLE_LOAD
        if toggles.any():
            holding = carrying >= 0
            shelf_under = self.shelf_grid.ravel()[cell + self._cell_base]
            loads = toggles & ~holding & (shelf_under > 0)
            unloads = toggles & holding & ~self._highway[cell]
            carrying = self.carrying = np.where(loads, shelf_under - 1, np.where(unloads, -1, carrying))
        self.dir = self._turn[direction * N_ACTIONS + raw]
        if move_ok is not None and move_ok.any():
            self._apply_moves(move_ok, target)

        rewards = self._deliver(active)
        if all_active:
            self.steps += 1
        else:
            self.steps += active
        truncated = (self.steps >= self.params.max_steps) & active
        self._obs = None
        return rewards, np.zeros(C, dtype=bool), truncated

    def observations(self) -> np.ndarray:
        if self._obs is None:
            self._obs = self._observe()
        return self._obs

    # ------------------------------------------------------------------ state access

    def copy_state(self, copy: int) -> WorldState:
        """The world of ``copy`` in plain arrays."""
        PW = self._pw
        return WorldState(
            agent_x=self.cell[copy] % PW - 1,
            agent_y=self.cell[copy] // PW - 1,
            agent_dir=self.dir[copy].copy(),
            carrying=self.carrying[copy].copy(),
            shelf_x=self.shelf_cell[copy] % PW - 1,
            shelf_y=self.shelf_cell[copy] // PW - 1,
            shelf_colours=self.shelf_colours[copy].copy(),
            request_queue=self.queue[copy].copy(),
            steps=int(self.steps[copy]),
        )

    def set_copy_state(self, copy: int, state: WorldState) -> None:
        """Puts ``state`` into ``copy`` (carried shelves follow their carriers); the generator is kept."""
        PW = self._pw
        self.cell[copy] = (np.asarray(state.agent_y) + 1) * PW + np.asarray(state.agent_x) + 1
        self.dir[copy] = state.agent_dir
        self.carrying[copy] = state.carrying
        self.shelf_cell[copy] = (np.asarray(state.shelf_y) + 1) * PW + np.asarray(state.shelf_x) + 1
        held = self.carrying[copy] >= 0
        self.shelf_cell[copy, self.carrying[copy, held]] = self.cell[copy, held]
        self.shelf_colours[copy] = state.shelf_colours
        self.queue[copy] = state.request_queue
        self.steps[copy] = state.steps
        self._rebuild_copy(copy)
        self._obs = None

    def generator(self, copy: int) -> np.random.Generator:
        return self._generators[copy]

    def set_generator(self, copy: int, generator: np.random.Generator) -> None:
        self._generators[copy] = generator

    # ------------------------------------------------------------------ internals

    def _rebuild_copy(self, copy: int) -> None:
        """Grids, request mask and shelf codes of ``copy`` from its positions and queue."""
        self.agent_grid[copy] = 0
        self.agent_grid[copy, self.cell[copy]] = np.arange(1, self.num_agents + 1)
        self.shelf_grid[copy] = 0
        self.shelf_grid[copy, self.shelf_cell[copy]] = np.arange(1, self.num_shelves + 1)
        self.requested[copy] = False
        self.requested[copy, self.queue[copy]] = True
        self._update_shelf_codes(copy)

    def _update_shelf_codes(self, copy) -> None:
        self._shelf_code[copy, 1:] = 1 + self.shelf_colours[copy] + self.n_colours * self.requested[copy]

    def _resolve_collisions(self, moving, target, occupant, occupant_g, raw) -> np.ndarray:
        """rware's collision rule on the functional graph of agents (one out-edge each).

        ``next[i]`` is the agent on i's target cell, or i itself when i stands still (a
        self-loop) or heads for an empty cell (the last agent before its component's sink).
        Pointer jumping gives every agent the end of its chain and its depth; chains that never
        end are in a cycle. Returns which agents move.
        """
        C, N = self.num_copies, self.num_agents
        moving_f = moving.ravel()
        everyone = self._all_agents
        into_agent = moving_f & (occupant.ravel() > 0)
        nxt = np.where(into_agent, occupant_g.ravel(), everyone)
        move_ok = np.zeros(C * N, dtype=bool)
        sink_root = moving_f & ~into_agent  # movers heading into an empty cell
        if into_agent.any():
            depth = into_agent.astype(np.int64)
            jump = nxt
            for _ in range(self._depth_rounds):
                depth = depth + depth[jump]
                jump = jump[jump]
            ends = (nxt == everyone)[jump]  # the chain reaches a root (else: it is in a cycle)
            cyclic = moving_f & ~ends
            if cyclic.any():
                on_cycle = np.zeros(C * N, dtype=bool)
                on_cycle[jump[cyclic]] = True
                swap = nxt[nxt] == everyone  # on a 2-cycle (roots are excluded below)
                move_ok |= on_cycle & ~swap
            candidates = moving_f & ends & sink_root[jump]
            root = jump
        else:
            candidates = sink_root
            depth = np.zeros(C * N, dtype=np.int64)
            root = everyone
        if not candidates.any():
            return move_ok.reshape(C, N)

        # One winner chain per sink: the deepest agent's; equally deep agents are a tie.
        members = np.flatnonzero(candidates)
        sink = (target.ravel() + self._cell_base_flat)[root[members]]
        member_depth = depth[members]
        best = self._scratch
        np.maximum.at(best, sink, member_depth + 1)
        deepest = member_depth + 1 == best[sink]
        best[sink] = 0
        leaves, leaf_sinks = members[deepest], sink[deepest]
        tied = np.zeros(0, dtype=np.int64)
        if len(leaves) > 1:
            order = np.argsort(leaf_sinks, kind="stable")
            sorted_sinks = leaf_sinks[order]
            repeated = sorted_sinks[1:] == sorted_sinks[:-1]
            if repeated.any():
                tied = np.unique(sorted_sinks[1:][repeated])
                keep = ~np.isin(leaf_sinks, tied)
                leaves = leaves[keep]
        frontier = leaves
        while len(frontier):
            move_ok[frontier] = True
            frontier = frontier[nxt[frontier] != frontier]
            frontier = nxt[frontier]
        if len(tied):
            self._break_ties(tied, moving, target, move_ok)
        return move_ok.reshape(C, N)

    def _break_ties(self, tied_sinks: np.ndarray, moving, target, move_ok) -> None:
        """Equally long chains into one empty cell: rware's winner, found as rware finds it.

        rware takes ``networkx.dag_longest_path`` of the component's subgraph, whose predecessor
        order follows the subgraph's node iteration (the graph's insertion order, or for a small
        component the order of a Python set of (x, y) tuples). We rebuild that copy's graph
        exactly as rware does and let networkx choose, only for the tied components.
        """
        import networkx as nx

        P, PW, N = self._cells, self._pw, self.num_agents
        for copy in np.unique(tied_sinks // P).tolist():
            self.tie_fallbacks += 1
            cells = self.cell[copy].tolist()
            ends = np.where(moving[copy], target[copy], self.cell[copy]).tolist()
            graph = nx.DiGraph()
            for start, end in zip(cells, ends):
                graph.add_edge((start % PW - 1, start // PW - 1), (end % PW - 1, end // PW - 1))
            sinks = {(c % PW - 1, c // PW - 1) for c in (tied_sinks[tied_sinks // P == copy] % P).tolist()}
            agent_at = {(c % PW - 1, c // PW - 1): i for i, c in enumerate(cells)}
            for component in nx.weakly_connected_components(graph):
                if sinks.isdisjoint(component):
                    continue
                path = nx.algorithms.dag_longest_path(graph.subgraph(component).copy())
                for node in path:
                    if node in agent_at:
                        move_ok[copy * N + agent_at[node]] = True

    def _apply_moves(self, move_ok: np.ndarray, target: np.ndarray) -> None:
        """Moves the committed agents and the shelves they carry; updates both grids."""
        movers_c, movers_i = np.nonzero(move_ok)
        old = self.cell[movers_c, movers_i]
        new = target[movers_c, movers_i]
        base = movers_c * self._cells
        agent_grid = self.agent_grid.ravel()
        agent_grid[base + old] = 0
        agent_grid[base + new] = movers_i + 1
        self.cell[movers_c, movers_i] = new
        shelves = self.carrying[movers_c, movers_i]
        laden = shelves >= 0
        if laden.any():
            shelf_grid = self.shelf_grid.ravel()
            base, old, new, shelves, copies = base[laden], old[laden], new[laden], shelves[laden], movers_c[laden]
            shelf_grid[base + old] = 0
            shelf_grid[base + new] = shelves + 1
            self.shelf_cell[copies, shelves] = new

    def _deliver(self, active: np.ndarray) -> np.ndarray:
        """Pays +1 to each agent on a goal with a requested shelf of its own colour, then refills.

        All deliveries of the step are decided first and their replacements drawn after, in
        goal order, each from the shelves not requested at that moment (rware's rule).
        """
        C, N = self.num_copies, self.num_agents
        rewards = np.zeros((C, N), dtype=np.float64)
        goal_g = self._goal_cells[None, :] + self._cell_base
        shelf_ids = self.shelf_grid.ravel()[goal_g]  # [C, goals]
        agent_ids = self.agent_grid.ravel()[goal_g]
        loaded = (shelf_ids > 0) & (agent_ids > 0)
        if not loaded.any():
            return rewards
        copies_idx = np.arange(C)[:, None]
        shelf_index = np.maximum(shelf_ids - 1, 0)
        agent_index = np.maximum(agent_ids - 1, 0)
        delivered = (
            loaded
            & self.requested[copies_idx, shelf_index]
            & (self.shelf_colours[copies_idx, shelf_index] == self.agent_colours[agent_index])
            & active[:, None]
        )
        if not delivered.any():
            return rewards
        copies, goals = np.nonzero(delivered)
        rewards[copies, agent_index[copies, goals]] += 1.0
        for copy in np.unique(copies).tolist():
            self.delivery_steps += 1
            rng = self._generators[copy]
            queue, requested = self.queue[copy], self.requested[copy]
            for shelf in shelf_index[copy, delivered[copy]].tolist():
                new_shelf = int(rng.choice(np.flatnonzero(~requested)))
                slot = int(np.flatnonzero(queue == shelf)[0])
                queue[slot] = new_shelf
                requested[shelf] = False
                requested[new_shelf] = True
            self._update_shelf_codes(copy)
        return rewards

    def _observe(self) -> np.ndarray:
        """All agents' observations of all copies: a few gathers from fixed tables."""
        C, N, D = self.num_copies, self.num_agents, self.obs_size
        cell = self.cell
        self_part = self._self_table[(cell * N_DIRECTIONS + self.dir) * 2 + (self.carrying >= 0)]
        window = (cell + self._cell_base)[:, :, None] + self._window
        has_agent = self.agent_grid.ravel()[window] > 0
        shelf_code = self._shelf_code.ravel()[self.shelf_grid.ravel()[window] + self._shelf_base[:, :, None]]
        cells = self._cell_table[shelf_code * 2 + has_agent]
        plain = np.concatenate([self_part, cells.reshape(C, N, -1)], axis=2)
        return plain.reshape(C, N * D)[:, self._obs_gather].reshape(C, N, D)


class ColouredWarehouse(BatchedParallelEnv):
    """C-RWARE as a PettingZoo ``ParallelEnv``: agents ``agent_0 .. agent_{N-1}``.

    Action ``a`` of an agent of colour ``c`` is rware's ``Action((a - c) mod 5)``. The
    observation (float32, length ``8 + 9 * (C + 2)``) is rware's self part (x, y, carrying,
    direction one-hot, on-highway) followed by, for each of the 9 cells around the agent:
    has-agent, the shelf's colour one-hot (zeros without a shelf), requested; the whole vector
    is then permuted by a fixed per-colour permutation (same in every process for the same
    ``permutation_seed``). Rewards are individual. The time limit is a truncation. An agent
    missing from the action dict stands still.
    """

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
        super().__init__(functools.partial(ColouredWarehouseBatch, params))
        self.metadata = {"name": "coloured_rware_v0", "render_modes": []}
        self.task = params.task
        self.size = params.size
        self.difficulty = params.difficulty
        self.n_colours = params.n_colours
        self.max_steps = params.max_steps
        self.permutation_seed = params.permutation_seed
        self.permute_observations = params.permute_observations
        self.agent_colours = params.agent_colours
        self.obs_size = params.obs_size
        self.grid_size = self.core.grid_size
        self.goals = self.core.goals

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any]):
        """The validated constructor that the RLlib registry calls with ``env_config``.

        ``implementation: "upstream"`` builds the rware-based
        :class:`~rllib_adaps.envs.coloured_rware_upstream.UpstreamColouredWarehouse` instead.
        """
        implementation, config = split_config(env_config)
        if implementation == "upstream":
            from rllib_adaps.envs.coloured_rware_upstream import UpstreamColouredWarehouse

            return UpstreamColouredWarehouse(config.pop("task", None), **config)
        return cls(config.pop("task", None), **config)

    @property
    def observation_permutations(self) -> np.ndarray:
        """Row ``c``: the gather index of colour ``c`` (``obs = plain_obs[row]``)."""
        return self.core.observation_permutations_by_colour.copy()

    def world_state(self) -> WorldState:
        return self.core.copy_state(0)

    def set_world_state(self, state: WorldState) -> None:
        self.core.set_copy_state(0, state)
