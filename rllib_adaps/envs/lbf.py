"""Level-Based Foraging whose agents keep their level for the life of the env.

The installed ``lbforaging`` redraws and shuffles player levels at every reset, so an agent
has no stable identity; SePS/AdaPS cluster agents by identity and need levels that persist.
Here every agent gets one fixed level (given, or drawn once from ``level_seed``); positions and
food are still random per reset. The time limit is reported as a truncation.

Two implementations share one config check (:func:`parse_env_config`):

- ``"numpy"`` (default): :class:`LevelForagingBatch` holds ``C`` copies as arrays and steps
  them in one call; :class:`PersistentLevelForaging` is one copy as a PettingZoo env.
- ``"upstream"``: :class:`rllib_adaps.envs.lbf_upstream.UpstreamLevelForaging`, the
  ``lbforaging`` engine itself.

The numpy version replays upstream step for step: same random draws at reset (a copy reset
with seed ``s`` lays out the episode that the upstream env reset with ``s`` lays out, and later
seedless resets agree too), same moves, loads, rewards, observations and episode ends. Its
rules, as upstream has them (lbforaging 2.0.0):

- A move into a food cell or off the grid, and a LOAD with no food next to the agent, act as
  NONE. Other agents do not make a move invalid.
- Each agent claims a cell: its target for a move, its own cell for NONE and LOAD. An agent
  gets its claimed cell iff nobody else claims it. So two agents can swap, an agent can step
  into a cell that its owner leaves, and an agent can step onto an agent whose own move failed
  (both then share a cell). A move into an agent that stays fails.
- The loaders next to one food load it together iff their levels sum to at least its level:
  each gets ``level * food / (sum of their levels * food spawned this episode)`` (or
  ``level * food`` without normalisation); otherwise each gets ``-penalty``.
- The episode terminates when all food is eaten, and is truncated after ``max_steps`` steps.
- At reset, players are placed in order on uniform cells free of players, where players not
  yet placed still stand where the last episode left them; so the layout of a reset with seed
  ``s`` depends on the previous episode's end (not only on ``s``). Food then needs a free
  interior cell with no food in its 3x3 block nor two cells away in a straight line; after
  1000 tries in all, fewer foods are placed.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass
from typing import Any, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from rllib_adaps.envs.base import (
    EnvConfigError,
    agent_names,
    check_bool,
    check_choice,
    check_float,
    check_int,
    check_keys,
)
from rllib_adaps.envs.batched import BatchedEnv, BatchedParallelEnv, seeded_generator

ENV_NAME = "lbf"
IMPLEMENTATIONS = ("numpy", "upstream")
DEFAULT_LEVELS = (1, 1, 2, 2, 3, 3, 4, 4)

#: env_config key -> default.
DEFAULTS: dict[str, Any] = {
    "implementation": "numpy",
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

# Actions.
NONE, NORTH, SOUTH, WEST, EAST, LOAD = range(6)
NUM_ACTIONS = 6
#: Upstream's retry limits: per player at reset, and in all for the foods of one reset.
PLAYER_ATTEMPTS = FOOD_ATTEMPTS = 1000


@dataclass(frozen=True)
class LBFParams:
    """Validated LBF settings, the keyword arguments of both implementations."""

    levels: tuple[int, ...] = DEFAULT_LEVELS
    grid_size: int = 10
    foods: int = 4
    max_food_level: int | None = None
    sight: int | None = None
    force_coop: bool = False
    max_steps: int = 50
    penalty: float = 0.0
    normalize_reward: bool = True
    observe_agent_levels: bool = True

    @classmethod
    def build(
        cls,
        levels: Sequence[int] = DEFAULT_LEVELS,
        grid_size: int = 10,
        foods: int = 4,
        max_food_level: int | None = None,
        sight: int | None = None,
        force_coop: bool = False,
        max_steps: int = 50,
        penalty: float = 0.0,
        normalize_reward: bool = True,
        observe_agent_levels: bool = True,
    ) -> "LBFParams":
        """Checks every setting; errors name the ``env_config`` key."""
        levels = _check_levels(levels)
        grid_size = check_int(ENV_NAME, "grid_size", grid_size, 3, 100)
        foods = check_int(ENV_NAME, "foods", foods, 1, grid_size * grid_size)
        if len(levels) + foods > grid_size * grid_size:
            raise EnvConfigError(
                f"{ENV_NAME}: {len(levels)} players and {foods} foods do not fit on a "
                f"{grid_size}x{grid_size} grid; 'grid_size' must be larger."
            )
        if sight is not None:
            sight = check_int(ENV_NAME, "sight", sight, 1, grid_size)
        if max_food_level is not None:
            max_food_level = check_int(ENV_NAME, "max_food_level", max_food_level, 1)
        return cls(
            levels=levels,
            grid_size=grid_size,
            foods=foods,
            max_food_level=max_food_level,
            sight=sight,
            force_coop=check_bool(ENV_NAME, "force_coop", force_coop),
            max_steps=check_int(ENV_NAME, "max_steps", max_steps, 1),
            penalty=check_float(ENV_NAME, "penalty", penalty, 0.0),
            normalize_reward=check_bool(ENV_NAME, "normalize_reward", normalize_reward),
            observe_agent_levels=check_bool(ENV_NAME, "observe_agent_levels", observe_agent_levels),
        )

    @property
    def food_level_cap(self) -> int:
        """The highest food level: ``max_food_level``, or the sum of the three lowest levels."""
        if self.max_food_level is not None:
            return self.max_food_level
        return sum(sorted(self.levels)[:3])


def _check_levels(levels: Any) -> tuple[int, ...]:
    if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
        raise EnvConfigError(f"{ENV_NAME}: 'levels' must be a list of ints, got {levels!r}.")
    check_int(ENV_NAME, "len(levels)", len(levels), 2, 64)
    return tuple(check_int(ENV_NAME, "levels[i]", level, 1, 100) for level in levels)


def _resolve_levels(cfg: Mapping[str, Any]) -> tuple[int, ...]:
    """Levels as given, or drawn once from ``level_seed`` for ``players`` agents."""
    levels, players = cfg["levels"], cfg["players"]
    if levels is None and players is None:
        levels = DEFAULT_LEVELS
    if levels is not None:
        if isinstance(levels, (str, bytes)) or not hasattr(levels, "__len__"):
            raise EnvConfigError(f"{ENV_NAME}: 'levels' must be a list of ints, got {levels!r}.")
        if players is not None and check_int(ENV_NAME, "players", players, 2, 64) != len(levels):
            raise EnvConfigError(
                f"{ENV_NAME}: 'levels' has {len(levels)} entries but 'players' is "
                f"{players}; give a level for every player (or leave 'players' out)."
            )
        return _check_levels(levels)
    players = check_int(ENV_NAME, "players", players, 2, 64)
    low = check_int(ENV_NAME, "min_player_level", cfg["min_player_level"], 1, 100)
    high = check_int(ENV_NAME, "max_player_level", cfg["max_player_level"], low, 100)
    seed = check_int(ENV_NAME, "level_seed", cfg["level_seed"], 0)
    return tuple(np.random.default_rng(seed).integers(low, high + 1, size=players).tolist())


def parse_env_config(env_config: Mapping[str, Any] | None) -> tuple[LBFParams, str]:
    """The one check of an LBF ``env_config`` (keys: ``DEFAULTS``): settings and implementation."""
    env_config = dict(env_config or {})
    check_keys(ENV_NAME, env_config, DEFAULTS)
    cfg = {**DEFAULTS, **env_config}
    implementation = check_choice(ENV_NAME, "implementation", cfg["implementation"], IMPLEMENTATIONS)
    # Grid checks first, so that a bad grid is named before the levels that may not fit it.
    grid_size = check_int(ENV_NAME, "grid_size", cfg["grid_size"], 3, 100)
    check_int(ENV_NAME, "foods", cfg["foods"], 1, grid_size * grid_size)
    params = LBFParams.build(
        levels=_resolve_levels(cfg),
        grid_size=grid_size,
        foods=cfg["foods"],
        max_food_level=cfg["max_food_level"],
        sight=cfg["sight"],
        force_coop=cfg["force_coop"],
        max_steps=cfg["max_steps"],
        penalty=cfg["penalty"],
        normalize_reward=cfg["normalize_reward"],
        observe_agent_levels=cfg["observe_agent_levels"],
    )
    return params, implementation


def observation_box(params: LBFParams) -> spaces.Box:
    """The observation space of every agent, as upstream builds it."""
    top = params.grid_size - 1
    num_players = len(params.levels)
    if params.observe_agent_levels:
        low = [-1, -1, 0] * params.foods + [-1, -1, 0] * num_players
        high = [top, top, params.food_level_cap] * params.foods + [top, top, max(params.levels)] * num_players
    else:
        low = [-1, -1, 0] * params.foods + [-1, -1] * num_players
        high = [top, top, params.food_level_cap] * params.foods + [top, top] * num_players
    low, high = np.asarray(low, np.float32), np.asarray(high, np.float32)
    return spaces.Box(low, high, low.shape, np.float32)


def _find_free_cell(
    rng: np.random.Generator, low: int, high: int, width: int, blocked: Sequence[int], max_pairs: int
) -> tuple[int | None, int]:
    """Replays upstream's retry loop ``row = integers(low, high); col = integers(low, high)``
    until cell ``row * width + col`` is not ``blocked``, for at most ``max_pairs`` pairs.

    ``blocked`` holds a count or flag per cell (row-major). Returns the cell (None if every pair
    was blocked) and the number of pairs drawn, and leaves
    the generator where those scalar draws leave it. A draw of ``size=k`` yields the same
    numbers as ``k`` scalar draws with the same bounds, so long retry runs are drawn in chunks;
    a chunk that overshoots is undone by restoring the generator's state and drawing just the
    used part again.
    """
    used = 0
    integers = rng.integers
    while used < max_pairs and used < 3:  # the usual case: a free cell within a few tries
        cell = int(integers(low, high)) * width + int(integers(low, high))  # scalars: no size overhead
        used += 1
        if not blocked[cell]:
            return cell, used
    chunk = 32
    blocked = np.asarray(blocked)
    while used < max_pairs:
        count = min(chunk, max_pairs - used)
        state = rng.bit_generator.state
        draws = rng.integers(low, high, size=2 * count)
        cells = draws[0::2] * width + draws[1::2]
        free = blocked[cells] == 0
        if free.any():
            first = int(free.argmax())
            if first + 1 < count:
                rng.bit_generator.state = state
                rng.integers(low, high, size=2 * (first + 1))
            return int(cells[first]), used + first + 1
        used += count
        chunk *= 4
    return None, used


def own_observation_features(foods: int, observe_agent_levels: bool) -> tuple[int, ...]:
    """The observation column of the agent's own level (its entry comes first among the players);
    the other players' levels, in index order, describe the others."""
    return (3 * foods + 2,) if observe_agent_levels else ()


class LevelForagingBatch(BatchedEnv):
    """``num_copies`` LBF worlds as arrays with a leading copy axis, stepped in one call.

    Cells are indexed on a grid padded by one ring: cell ``(r, c)`` is ``(r + 1) * W + c + 1``
    with ``W = grid_size + 2``, so a move's target is ``cell + offset`` and the ring stops moves
    off the grid. ``food_grid[copy * W * W + cell]`` is the food level there (0: none, -1: the
    ring), one flat array for all copies so that one fancy index reads every copy.
    """

    name = ENV_NAME

    def __init__(self, params: LBFParams, num_copies: int):
        self.params = params
        self.num_copies = num_copies
        self.levels = list(params.levels)
        self.num_agents = num_agents = len(params.levels)
        self.possible_agents = agent_names(num_agents)
        distinct_levels = sorted(set(self.levels))
        self.true_agent_types = {
            agent: distinct_levels.index(level) for agent, level in zip(self.possible_agents, self.levels)
        }
        self.idle_actions = np.zeros(num_agents, dtype=np.int64)
        self.own_observation_features = own_observation_features(params.foods, params.observe_agent_levels)
        self._observation_space = observation_box(params)
        self._action_space = spaces.Discrete(NUM_ACTIONS)

        size = params.grid_size
        self.width = width = size + 2
        self.cells_per_copy = width * width
        self.num_foods = params.foods
        sight = size if params.sight is None else params.sight
        self.sight = sight
        #: With sight >= size - 1 every agent sees the whole grid (upstream's windows then
        #: cover it from any cell), so all agents share one food list.
        self.full_view = sight >= size - 1
        self._level_values = np.asarray(self.levels, dtype=np.int64)
        #: Every agent's level in every copy, flat: weights for summing levels per food.
        self._level_weights = np.tile(self._level_values.astype(np.float64), num_copies)
        # Food levels at reset (upstream's spawn_food with min level 1 and our fixed levels).
        self._food_max = params.food_level_cap
        self._food_min = self._food_max if params.force_coop else 1
        self._player_dim = 3 if params.observe_agent_levels else 2
        self.obs_dim = 3 * self.num_foods + self._player_dim * num_agents

        self._move_offsets = np.array([0, -width, width, -1, 1, 0], dtype=np.int64)
        #: Neighbours in upstream's ``adjacent_food_location`` order: north, south, west, east.
        self._neighbour_offsets = np.array([-width, width, -1, 1], dtype=np.int64)
        self._copy_base = np.arange(num_copies, dtype=np.int64) * self.cells_per_copy
        #: Agent i's player slots: itself, then the others in index order.
        self._seen_order = np.array([[i] + [j for j in range(num_agents) if j != i] for i in range(num_agents)])
        self._food_block = _food_blocks(size)
        #: Unpadded cell (row-major) -> padded cell, and back (-1 on the ring).
        self._padded_of = [(cell // size + 1) * width + cell % size + 1 for cell in range(size * size)]
        self._unpadded_of = [-1] * (width * width)
        for cell, padded in enumerate(self._padded_of):
            self._unpadded_of[padded] = cell

        ring = np.full((width, width), -1, dtype=np.int64)
        ring[1:-1, 1:-1] = 0
        self._empty_grid = ring.ravel()
        self._generators = [seeded_generator(None) for _ in range(num_copies)]
        self.food_grid = np.tile(self._empty_grid, num_copies)  # [C * cells], copy-major
        self.positions = np.zeros((num_copies, num_agents), dtype=np.int64)  # padded cells
        #: Padded cell of each food of the episode in row-major order (0 for a food that did
        #: not fit), and its level now (0 once eaten).
        self.food_cells = np.zeros((num_copies, self.num_foods), dtype=np.int64)
        self.food_levels = np.zeros((num_copies, self.num_foods), dtype=np.int64)
        self.food_spawned = np.zeros(num_copies, dtype=np.float64)
        self.steps_taken = np.zeros(num_copies, dtype=np.int64)
        #: Whether a copy's players have positions yet: at a reset, upstream keeps a player's
        #: old position until it is placed again, and old positions block cells.
        self._placed = np.zeros(num_copies, dtype=bool)
        self._observations: np.ndarray | None = None

    def observation_space(self, agent: str) -> spaces.Box:
        return self._observation_space

    def action_space(self, agent: str) -> spaces.Discrete:
        return self._action_space

    # ----------------------------------------------------------------------------- reset

    def reset_copies(self, copies: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Upstream's reset draws, per copy: players in order, then ``permutation(foods)``,
        then each food's cell (and level, unless the level range is one value)."""
        copies = np.asarray(copies, dtype=np.int64).reshape(-1)
        if copies.size == 0:
            return
        size, num_foods = self.params.grid_size, self.num_foods
        food_min, food_max = self._food_min, self._food_max
        padded_of, unpadded_of, food_block = self._padded_of, self._unpadded_of, self._food_block
        new_positions, new_food_cells, new_food_levels = [], [], []
        for copy, seed in zip(copies.tolist(), seeds):
            if seed is not None:
                self._generators[copy] = seeded_generator(seed)
            rng = self._generators[copy]
            # Players (our spawn_players): a uniform cell until it is free of players; players
            # not yet placed in this reset still sit on their old cells (upstream's
            # _is_empty_location looks at every player's position, old or new).
            occupied = [0] * (size * size)
            old = [unpadded_of[cell] for cell in self.positions[copy].tolist()] if self._placed[copy] else None
            if old is not None:
                for cell in old:
                    occupied[cell] += 1
            players = []
            for agent in range(self.num_agents):
                cell, _ = _find_free_cell(rng, 0, size, size, occupied, PLAYER_ATTEMPTS)
                if cell is None:  # pragma: no cover - as upstream: impossible on valid grids
                    raise RuntimeError("Could not place an LBF player on an empty cell.")
                if old is not None:
                    occupied[old[agent]] -= 1
                occupied[cell] += 1
                players.append(padded_of[cell])
            # Foods (upstream's spawn_food): interior cells with no food within one cell, nor
            # two cells in a straight line, and no player on them; 1000 tries in all.
            rng.permutation(num_foods)
            foods: list[tuple[int, int]] = []
            attempts = 0
            while len(foods) < num_foods and attempts < FOOD_ATTEMPTS:
                cell, used = _find_free_cell(rng, 1, size - 1, size, occupied, FOOD_ATTEMPTS - attempts)
                attempts += used
                if cell is None:
                    break
                level = food_min if food_min == food_max else int(rng.integers(food_min, food_max + 1))
                foods.append((padded_of[cell], level))
                for blocked in food_block[cell]:
                    occupied[blocked] = 1
            foods.sort()  # row-major, as observations list them
            foods += [(0, 0)] * (num_foods - len(foods))
            new_positions.append(players)
            new_food_cells.append([cell for cell, _ in foods])
            new_food_levels.append([level for _, level in foods])
        self._placed[copies] = True
        self.steps_taken[copies] = 0
        self.positions[copies] = new_positions
        food_cells = np.asarray(new_food_cells, dtype=np.int64).reshape(len(copies), num_foods)
        food_levels = np.asarray(new_food_levels, dtype=np.int64).reshape(len(copies), num_foods)
        self.food_cells[copies] = food_cells
        self.food_levels[copies] = food_levels
        self.food_spawned[copies] = food_levels.sum(axis=1)
        self.food_grid.reshape(self.num_copies, -1)[copies] = self._empty_grid
        spawned = food_levels > 0
        self.food_grid[(food_cells + self._copy_base[copies, None])[spawned]] = food_levels[spawned]
        self._observations = None

    def place(self, copy: int, players: Sequence[tuple[int, int]], foods: Sequence[tuple[int, int, int]]) -> None:
        """Puts copy ``copy`` in a hand-made state (for tests): players at ``(row, col)`` and
        foods ``(row, col, level)``; the food spawned this episode becomes their total level."""
        width = self.width
        grid = self.food_grid[copy * self.cells_per_copy : (copy + 1) * self.cells_per_copy]
        grid[:] = self._empty_grid
        self.positions[copy] = [(row + 1) * width + col + 1 for row, col in players]
        cells = sorted(((row + 1) * width + col + 1, level) for row, col, level in foods)
        self.food_cells[copy] = 0
        self.food_levels[copy] = 0
        for slot, (cell, level) in enumerate(cells):
            grid[cell] = level
            self.food_cells[copy, slot] = cell
            self.food_levels[copy, slot] = level
        self.food_spawned[copy] = float(sum(level for _, _, level in foods))
        self._placed[copy] = True
        self._observations = None

    def player_cells(self, copy: int) -> list[tuple[int, int]]:
        """The ``(row, col)`` of every player of copy ``copy``."""
        rows, cols = np.divmod(self.positions[copy], self.width)
        return list(zip((rows - 1).tolist(), (cols - 1).tolist()))

    # ------------------------------------------------------------------------------ step

    def step_copies(self, actions: np.ndarray, active: np.ndarray):
        """One upstream step in every active copy; inactive copies act NONE, which changes
        nothing, and are masked out of the step count and the episode ends."""
        num_copies, num_agents = self.num_copies, self.num_agents
        all_active = bool(active.all())
        if not all_active:
            actions = np.where(active[:, None], actions, NONE)
        grid = self.food_grid
        cells = self.positions + self._copy_base[:, None]  # [C, N] cells in the flat food grid

        # Valid actions (upstream's _valid_actions, from before the step): a move needs an
        # empty, in-grid target; LOAD needs food in a neighbouring cell. Invalid -> NONE.
        targets = cells + self._move_offsets[actions]
        moving = (actions >= NORTH) & (actions <= EAST) & (grid[targets] == 0)
        targets = np.where(moving, targets, cells)

        # Moves: an agent gets the cell it claims iff it is the only claimant.
        claims = np.bincount(targets.ravel(), minlength=grid.size)
        moves = moving & (claims[targets] == 1)
        rewards = np.zeros((num_copies, num_agents))
        loading = actions == LOAD
        if loading.any():
            rewards = self._load(cells, loading, rewards)
        if moves.any():
            self.positions = np.where(moves, targets - self._copy_base[:, None], self.positions)

        if all_active:
            self.steps_taken += 1
        else:
            self.steps_taken += active
        self.food_levels = np.maximum(grid[self.food_cells + self._copy_base[:, None]], 0)
        food_left = self.food_levels.any(axis=1)
        terminated = ~food_left
        truncated = food_left & (self.steps_taken >= self.params.max_steps)
        if not all_active:
            terminated &= active
            truncated &= active
        self._observations = None
        return rewards, terminated, truncated

    def _load(self, cells: np.ndarray, loading: np.ndarray, rewards: np.ndarray) -> np.ndarray:
        """Loads (upstream's loop over the set of loading players).

        Upstream pops loaders from a set (an order set by object ids). Popping ``p`` takes its
        first neighbouring food in N, S, W, E order and the loaders adjacent to that food as
        one group. The order cannot matter: food is spawned with no other food in its 3x3
        block nor two cells away in a straight line, so no cell is next to two foods, each
        loader has exactly one food, and the groups are the loaders of each food whatever the
        order. Loaders stay where they are, so adjacency before and after the moves agree.
        Upstream's ``adjacent_food_location`` skips north/west when the loader is in row/column
        1 (``row > 1``), but food never spawns on the border, so that changes nothing.
        """
        grid = self.food_grid
        neighbours = cells[:, :, None] + self._neighbour_offsets  # [C, N, 4]
        has_food = grid[neighbours] > 0
        loading &= has_food.any(axis=2)
        if not loading.any():
            return rewards
        food_cell = cells + self._neighbour_offsets[has_food.argmax(axis=2)]
        # Sum of the levels of the loaders of each food (a spare bin for non-loaders).
        spare = grid.size
        bins = np.where(loading, food_cell, spare)
        group_level = np.bincount(bins.ravel(), weights=self._level_weights, minlength=spare + 1)[bins]
        food = grid[food_cell]
        loaded = loading & (group_level >= food)
        if loaded.any():
            gain = (self._level_values * food).astype(np.float64)
            if self.params.normalize_reward:
                # (a copy with no food spawned has no loaders; keep its divisor nonzero)
                gain /= group_level * np.maximum(self.food_spawned, 1.0)[:, None]
            rewards = np.where(loaded, gain, rewards)
            grid[food_cell[loaded]] = 0
        failed = loading & ~loaded
        if failed.any():
            rewards = np.where(failed, 0.0 - self.params.penalty, rewards)
        return rewards

    # ------------------------------------------------------------------------ observations

    def observations(self) -> np.ndarray:
        if self._observations is None:
            self._observations = self._observe()
        return self._observations

    def _observe(self) -> np.ndarray:
        """Upstream's vector observation of every agent in every copy."""
        num_copies, num_agents, num_foods = self.num_copies, self.num_agents, self.num_foods
        width, sight, player_dim = self.width, self.sight, self._player_dim
        rows, cols = np.divmod(self.positions, width)
        rows -= 1
        cols -= 1
        food_rows, food_cols = np.divmod(self.food_cells, width)
        food_rows -= 1
        food_cols -= 1
        alive = self.food_levels > 0
        obs = np.empty((num_copies, num_agents, self.obs_dim), dtype=np.float32)
        food_part = obs[:, :, : 3 * num_foods].reshape(num_copies, num_agents, num_foods, 3)
        player_part = obs[:, :, 3 * num_foods :].reshape(num_copies, num_agents, num_agents, player_dim)
        order = self._seen_order
        if self.full_view:
            # Everyone sees all food, in row-major order, eaten food dropped.
            if alive.all():
                food_part[..., 0] = food_rows[:, None]
                food_part[..., 1] = food_cols[:, None]
                food_part[..., 2] = self.food_levels[:, None]
            else:
                foods = _compact(alive, np.stack([food_rows, food_cols, self.food_levels], axis=-1), (-1, -1, 0))
                food_part[:] = foods[:, None]
            player_part[..., 0] = rows[:, order]
            player_part[..., 1] = cols[:, order]
            if player_dim == 3:
                player_part[..., 2] = self._level_values[order]
            return obs
        # Partial view. Upstream's window of agent i starts at max(pos - sight, 0) and local
        # coordinates count from there. Food shows iff it lies within sight of the agent (the
        # window clipped to the grid); a player shows iff its local coordinates lie in
        # [0, 2 * sight], so near the top/left edge players further than sight away show.
        top = np.maximum(rows - sight, 0)[:, :, None]
        left = np.maximum(cols - sight, 0)[:, :, None]
        local_rows = food_rows[:, None, :] - top
        local_cols = food_cols[:, None, :] - left
        seen = (
            alive[:, None, :]
            & (np.abs(food_rows[:, None, :] - rows[:, :, None]) <= sight)
            & (np.abs(food_cols[:, None, :] - cols[:, :, None]) <= sight)
        )
        levels = np.broadcast_to(self.food_levels[:, None, :], seen.shape)
        food_part[:] = _compact(seen, np.stack([local_rows, local_cols, levels], axis=-1), (-1, -1, 0))
        local_rows = rows[:, order] - top
        local_cols = cols[:, order] - left
        seen = (local_rows >= 0) & (local_cols >= 0) & (local_rows <= 2 * sight) & (local_cols <= 2 * sight)
        columns = [local_rows, local_cols]
        if player_dim == 3:
            columns.append(np.broadcast_to(self._level_values[order], seen.shape))
        player_part[:] = _compact(seen, np.stack(columns, axis=-1), (-1, -1, 0)[:player_dim])
        return obs


def _compact(keep: np.ndarray, values: np.ndarray, pad: tuple[int, ...]) -> np.ndarray:
    """``values[..., k, :]`` where ``keep``, moved to the front of the ``k`` axis in order, the
    rest filled with ``pad``: float32 of ``values``' shape."""
    *lead, slots, dim = values.shape
    rows = keep.size // slots
    slot = np.cumsum(keep, axis=-1)
    slot -= 1
    slot[~keep] = slots  # dropped entries go to a spare slot
    out = np.empty((rows, slots + 1, dim), dtype=np.float32)
    out[:] = pad
    slot += (np.arange(0, rows * (slots + 1), slots + 1)).reshape(*lead, 1)
    out.reshape(-1, dim)[slot.ravel()] = values.reshape(-1, dim)
    return out[:, :slots].reshape(*lead, slots, dim)


def _food_blocks(size: int) -> list[list[int]]:
    """For each cell (row-major, unpadded) the cells where no food may spawn once food is
    there: its 3x3 block and the cells two steps away in a straight line (upstream checks a
    candidate's 3x3 neighbourhood and its distance-2 cross), clipped to the grid."""
    offsets = [(dr, dc) for dr in (-1, 0, 1) for dc in (-1, 0, 1)] + [(-2, 0), (2, 0), (0, -2), (0, 2)]
    blocks = []
    for row in range(size):
        for col in range(size):
            blocks.append([
                (row + dr) * size + col + dc
                for dr, dc in offsets
                if 0 <= row + dr < size and 0 <= col + dc < size
            ])
    return blocks


class PersistentLevelForaging(BatchedParallelEnv):
    """Level-Based Foraging (vector observations) with persistent agent levels (numpy).

    Observation of each agent: ``(y, x, level)`` of each food (padded ``-1, -1, 0``), then
    ``(y, x, level)`` of each player, the agent itself first (``(y, x)`` without
    ``observe_agent_levels``). Actions ``Discrete(6)``: NONE, NORTH, SOUTH, WEST, EAST, LOAD
    (an invalid action acts as NONE, as upstream; a missing agent acts NONE).
    """

    #: env_config key -> default.
    DEFAULTS: dict[str, Any] = DEFAULTS

    def __init__(
        self,
        levels: Sequence[int] = DEFAULT_LEVELS,
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
        self.params = LBFParams.build(
            levels, grid_size, foods, max_food_level, sight, force_coop, max_steps, penalty,
            normalize_reward, observe_agent_levels,
        )
        super().__init__(functools.partial(LevelForagingBatch, self.params))
        self.metadata = {"name": "lbf_persistent_v0", "render_modes": []}
        self.levels = list(self.params.levels)

    @classmethod
    def from_params(cls, params: LBFParams) -> "PersistentLevelForaging":
        return cls(**asdict(params))

    @classmethod
    def from_config(cls, env_config: Mapping[str, Any] | None = None):
        """Validated constructor from an ``env_config`` dict (keys: ``DEFAULTS``); with
        ``implementation: "upstream"`` an ``UpstreamLevelForaging``."""
        params, implementation = parse_env_config(env_config)
        if implementation == "upstream":
            from rllib_adaps.envs.lbf_upstream import UpstreamLevelForaging

            return UpstreamLevelForaging.from_params(params)
        return cls.from_params(params)
