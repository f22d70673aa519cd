"""C-RWARE, both implementations (numpy batch and rware-based): API, colour semantics, config.

Behaviour tests run on both ``implementation``s; ``test_env_coloured_rware_exact.py`` checks
that they agree step for step.
"""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from rware.warehouse import Action, Direction, Warehouse

from rllib_adaps.envs.base import EnvConfigError
from rllib_adaps.envs.coloured_rware import ColouredWarehouse, ColouredWarehouseBatch, observation_size
from rllib_adaps.envs.coloured_rware_upstream import UpstreamColouredWarehouse
from rllib_adaps.envs.rllib_env import OrderedParallelEnv

FORWARD, RIGHT = Action.FORWARD.value, Action.RIGHT.value
IMPLEMENTATIONS = ["numpy", "upstream"]
CLASSES = {"numpy": ColouredWarehouse, "upstream": UpstreamColouredWarehouse}


@pytest.fixture(params=IMPLEMENTATIONS)
def impl(request) -> str:
    return request.param


def make(impl: str, *args, **kwargs):
    return CLASSES[impl](*args, **kwargs)


def from_config(impl: str, config: dict):
    return ColouredWarehouse.from_config({**config, "implementation": impl})


def action_id_for(raw_action: int, colour: int) -> int:
    """The action id an agent of ``colour`` must choose to make rware do ``raw_action``."""
    return (raw_action + colour) % 5


def place_agents(env, placements: list[tuple[int, int, Direction]]) -> None:
    """Puts every agent at (x, y) facing a direction, empty-handed."""
    state = env.world_state()
    for i, (x, y, direction) in enumerate(placements):
        state.agent_x[i], state.agent_y[i], state.agent_dir[i] = x, y, direction.value
    state.carrying[:] = -1
    env.set_world_state(state)


def agent_pose(env, i: int) -> tuple[int, int, Direction]:
    state = env.world_state()
    return int(state.agent_x[i]), int(state.agent_y[i]), Direction(int(state.agent_dir[i]))


def request_queue(env) -> list[int]:
    return env.world_state().request_queue.tolist()


def stage_delivery(env, agent_index: int, shelf_colour: int, requested: bool) -> int:
    """Agent ``agent_index`` one step above a goal, facing it, carrying a shelf of ``shelf_colour``.

    The other agents wait in the top row, out of the way. Returns the carried shelf's index.
    """
    goal_x, goal_y = env.goals[0]
    parked = [(x, 0, Direction.UP) for x in range(len(env.possible_agents))]
    parked[agent_index] = (goal_x, goal_y - 1, Direction.DOWN)
    place_agents(env, parked)
    state = env.world_state()
    shelf = next(s for s in range(len(state.shelf_x)) if s not in state.request_queue)
    if requested:
        state.request_queue[0] = shelf
    state.shelf_colours[shelf] = shelf_colour
    state.carrying[agent_index] = shelf
    state.shelf_x[shelf], state.shelf_y[shelf] = goal_x, goal_y - 1
    env.set_world_state(state)
    return shelf


def noop_actions(env) -> dict[str, int]:
    return {agent: action_id_for(Action.NOOP.value, env.true_agent_types[agent]) for agent in env.agents}


def random_rollout(env, seed: int, steps: int):
    action_rng = np.random.default_rng(123)
    obs, _ = env.reset(seed=seed)
    trace = [np.concatenate(list(obs.values()))]
    for _ in range(steps):
        actions = {agent: int(action_rng.integers(5)) for agent in env.agents}
        obs, rewards, _, _, _ = env.step(actions)
        trace.append(np.concatenate(list(obs.values())))
        trace.append(np.array(list(rewards.values())))
    return trace, env.world_state().shelf_colours.copy()


# ---------------------------------------------------------------------- API conformance


@pytest.mark.parametrize(
    "config",
    [
        {"task": "tiny-4ag"},
        {"task": "tiny-4ag-hard"},
        {"task": "small-8ag", "max_steps": 40},
        {"task": "medium-16ag", "max_steps": 40},
        {"n_agents": 3, "n_colours": 1, "max_steps": 30},
        {"size": "small", "n_agents": 6, "n_colours": 4, "difficulty": "easy", "max_steps": 30},
    ],
)
def test_parallel_api(config, impl):
    env = from_config(impl, config)
    parallel_api_test(env, num_cycles=60)


def test_rllib_multiagent_check(impl):
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    check_multiagent_environments(OrderedParallelEnv(from_config(impl, {"task": "tiny-4ag"})))


def test_observations_lie_in_their_spaces(impl):
    env = make(impl, size="small", n_agents=5, n_colours=3)
    obs, _ = env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(100):
        for agent, agent_obs in obs.items():
            assert agent_obs.dtype == np.float32
            assert env.observation_space(agent).contains(agent_obs)
        obs, *_ = env.step({agent: int(rng.integers(5)) for agent in env.agents})


# ---------------------------------------------------------------------- deliveries


@pytest.mark.parametrize("agent_index", [0, 2])  # colour 0 and colour 1 of tiny-4ag
def test_requested_shelf_of_own_colour_pays_the_deliverer(agent_index, impl):
    env = make(impl, "tiny-4ag")
    env.reset(seed=0)
    colour = env.agent_colours[agent_index]
    shelf = stage_delivery(env, agent_index, shelf_colour=colour, requested=True)
    actions = noop_actions(env)
    actions[f"agent_{agent_index}"] = action_id_for(FORWARD, colour)
    _, rewards, *_ = env.step(actions)

    expected = {agent: 0.0 for agent in env.possible_agents}
    expected[f"agent_{agent_index}"] = 1.0
    assert rewards == expected
    assert agent_pose(env, agent_index)[:2] == tuple(env.goals[0])
    assert shelf not in request_queue(env)
    assert len(request_queue(env)) == len(set(request_queue(env))) == 4

    _, rewards, *_ = env.step(noop_actions(env))  # a delivered shelf pays once
    assert sum(rewards.values()) == 0.0


def test_requested_shelf_of_other_colour_pays_nothing_and_stays_requested(impl):
    env = make(impl, "tiny-4ag")
    env.reset(seed=0)
    shelf = stage_delivery(env, agent_index=0, shelf_colour=1, requested=True)
    actions = noop_actions(env)
    actions["agent_0"] = action_id_for(FORWARD, 0)
    _, rewards, *_ = env.step(actions)
    assert agent_pose(env, 0)[:2] == tuple(env.goals[0])
    assert sum(rewards.values()) == 0.0
    for _ in range(3):
        assert shelf in request_queue(env)
        _, rewards, *_ = env.step(noop_actions(env))
        assert sum(rewards.values()) == 0.0


def test_unrequested_shelf_of_own_colour_pays_nothing(impl):
    env = make(impl, "tiny-4ag")
    env.reset(seed=0)
    queue_before = request_queue(env)
    stage_delivery(env, agent_index=2, shelf_colour=1, requested=False)
    actions = noop_actions(env)
    actions["agent_2"] = action_id_for(FORWARD, 1)
    _, rewards, *_ = env.step(actions)
    assert agent_pose(env, 2)[:2] == tuple(env.goals[0])
    assert sum(rewards.values()) == 0.0
    assert request_queue(env) == queue_before


def test_requests_ignore_colour_and_loading_is_unrestricted(impl):
    env = make(impl, n_agents=4, n_colours=4)
    requested_colours = set()
    for seed in range(20):
        env.reset(seed=seed)
        state = env.world_state()
        assert len(set(state.request_queue.tolist())) == 4
        requested_colours |= set(state.shelf_colours[state.request_queue].tolist())
    assert requested_colours == {0, 1, 2, 3}
    # Colour-3 agent picks up a shelf that is not of its colour.
    place_agents(env, [(0, 0, Direction.UP), (3, 0, Direction.UP), (6, 0, Direction.UP), (1, 1, Direction.UP)])
    state = env.world_state()
    shelf = int(np.flatnonzero((state.shelf_x == 1) & (state.shelf_y == 1))[0])
    state.shelf_colours[shelf] = 0
    env.set_world_state(state)
    actions = noop_actions(env)
    actions["agent_3"] = action_id_for(Action.TOGGLE_LOAD.value, 3)
    env.step(actions)
    assert env.world_state().carrying[3] == shelf


def test_shelf_colours_are_redrawn_every_reset(impl):
    env = make(impl, n_agents=4, n_colours=4)
    draws = []
    for _ in range(3):
        env.reset()
        draws.append(env.world_state().shelf_colours.copy())
        assert set(draws[-1].tolist()) <= {0, 1, 2, 3}
        assert len(draws[-1]) == 32
    assert not all(np.array_equal(draws[0], d) for d in draws[1:])


# ---------------------------------------------------------------------- actions


def test_actions_are_rotated_by_colour(impl):
    env = make(impl, "tiny-4ag")  # colours [0, 0, 1, 1]
    env.reset(seed=0)
    start = [(0, 1, Direction.DOWN), (3, 1, Direction.DOWN), (6, 1, Direction.DOWN), (9, 1, Direction.DOWN)]

    place_agents(env, start)
    env.step({"agent_0": 1, "agent_1": 3, "agent_2": 2, "agent_3": 4})  # raw FORWARD/RIGHT for both colours
    moved = [agent_pose(env, i) for i in range(4)]
    assert moved[0] == (0, 2, Direction.DOWN)
    assert moved[2] == (6, 2, Direction.DOWN)
    assert moved[1][2] == moved[3][2] == Direction.LEFT  # rware's RIGHT from DOWN turns to LEFT

    place_agents(env, start)
    env.step({"agent_0": 1, "agent_1": 0, "agent_2": 1, "agent_3": 1})  # same ids, different meaning
    after = [agent_pose(env, i) for i in range(4)]
    assert after[0] == (0, 2, Direction.DOWN)  # colour 0: id 1 is FORWARD
    assert after[2] == (6, 1, Direction.DOWN)  # colour 1: id 1 is NOOP
    assert after[1] == (3, 1, Direction.DOWN)  # colour 0: id 0 is NOOP
    assert after[3] == (9, 1, Direction.DOWN)


def test_missing_agent_stands_still(impl):
    env = make(impl, "tiny-4ag")
    env.reset(seed=0)
    place_agents(env, [(0, 1, Direction.DOWN), (3, 1, Direction.DOWN), (6, 1, Direction.DOWN), (9, 1, Direction.DOWN)])
    before = env.world_state()
    env.step({"agent_0": action_id_for(FORWARD, 0)})
    after = env.world_state()
    assert agent_pose(env, 0) == (0, 2, Direction.DOWN)
    for field in ("agent_x", "agent_y", "agent_dir", "carrying"):
        np.testing.assert_array_equal(getattr(after, field)[1:], getattr(before, field)[1:])


def test_idle_actions_are_each_colours_noop():
    env = ColouredWarehouse(n_agents=6, n_colours=4)  # colours [0, 0, 0, 1, 2, 3]
    np.testing.assert_array_equal(env.core.idle_actions, [0, 0, 0, 1, 2, 3])
    assert all((action - colour) % 5 == Action.NOOP.value for action, colour in zip(env.core.idle_actions, env.agent_colours))


def test_action_spaces_are_discrete_five(impl):
    env = make(impl, n_agents=4, n_colours=4)
    for agent in env.possible_agents:
        assert env.action_space(agent).n == 5


# ---------------------------------------------------------------------- observations


@pytest.mark.parametrize("n_colours", [1, 2, 3, 4])
def test_observation_length(n_colours, impl):
    env = make(impl, n_agents=4, n_colours=n_colours)
    obs, _ = env.reset(seed=0)
    expected = 8 + 9 * (n_colours + 2)
    assert observation_size(n_colours) == expected
    for agent in env.possible_agents:
        assert obs[agent].shape == (expected,)
        assert env.observation_space(agent).shape == (expected,)


def test_unpermuted_observation_matches_rware(impl):
    """Self part equals rware's; each cell keeps rware's agent/shelf/request bits and adds colour."""
    config = dict(size="small", n_agents=8, n_colours=3, permute_observations=False)
    env = make(impl, **config)
    reference = UpstreamColouredWarehouse(**config)  # rware's objects in the same state
    obs, _ = env.reset(seed=11)
    reference.reset(seed=0)
    rng = np.random.default_rng(1)
    for _ in range(40):
        state = env.world_state()
        reference.set_world_state(state)
        core = reference.core
        requested_ids = set((state.request_queue + 1).tolist())
        for i, agent in enumerate(env.possible_agents):
            rware_obs = Warehouse._get_default_obs(core, core.agents[i])  # rware's own 71 values
            mine = obs[agent]
            np.testing.assert_array_equal(mine[:8], rware_obs[:8])
            mine_cells = mine[8:].reshape(9, 3 + 2)
            rware_cells = rware_obs[8:].reshape(9, 7)  # agent, direction x4, shelf, requested
            np.testing.assert_array_equal(mine_cells[:, 0], rware_cells[:, 0])
            np.testing.assert_array_equal(mine_cells[:, 1:4].sum(axis=1), rware_cells[:, 5])
            np.testing.assert_array_equal(mine_cells[:, 4], rware_cells[:, 6])
        # Colour of the shelf under each agent.
        for i, agent in enumerate(env.possible_agents):
            a = core.agents[i]
            shelf_id = core.grid[1, a.y, a.x]
            centre = obs[agent][8 + 4 * 5 : 8 + 5 * 5]
            if shelf_id:
                assert centre[1 + state.shelf_colours[shelf_id - 1]] == 1.0
                assert centre[4] == float(shelf_id in requested_ids)
        obs, *_ = env.step({agent: int(rng.integers(5)) for agent in env.agents})


def test_permutations_are_fixed_per_colour_across_instances(impl):
    env_a = make(impl, "tiny-4ag")
    env_b = from_config(impl, {"task": "tiny-4ag"})
    plain = make(impl, "tiny-4ag", permute_observations=False)
    perms = env_a.observation_permutations
    np.testing.assert_array_equal(perms, env_b.observation_permutations)
    np.testing.assert_array_equal(perms, make("numpy" if impl == "upstream" else "upstream", "tiny-4ag").observation_permutations)
    assert not np.array_equal(perms[0], perms[1])
    assert not np.array_equal(perms[0], np.arange(44))
    for row in perms:
        assert sorted(row.tolist()) == list(range(44))

    obs_a, _ = env_a.reset(seed=4)
    obs_b, _ = env_b.reset(seed=99)  # reset seeds do not touch the permutation
    obs_b, _ = env_b.reset(seed=4)
    obs_plain, _ = plain.reset(seed=4)
    for agent, colour in env_a.true_agent_types.items():
        np.testing.assert_array_equal(obs_a[agent], obs_b[agent])
        np.testing.assert_array_equal(obs_a[agent], obs_plain[agent][perms[colour]])

    other_seed = make(impl, "tiny-4ag", permutation_seed=1)
    assert not np.array_equal(other_seed.observation_permutations, perms)


# ---------------------------------------------------------------------- colours, time, seeding


@pytest.mark.parametrize(
    "n_agents, n_colours, expected",
    [(4, 2, [0, 0, 1, 1]), (5, 2, [0, 0, 0, 1, 1]), (7, 3, [0, 0, 0, 1, 1, 2, 2]), (3, 1, [0, 0, 0])],
)
def test_colour_blocks(n_agents, n_colours, expected, impl):
    env = make(impl, n_agents=n_agents, n_colours=n_colours)
    assert env.agent_colours == expected
    assert env.true_agent_types == {f"agent_{i}": c for i, c in enumerate(expected)}


def test_time_limit_is_a_truncation(impl):
    env = make(impl, "tiny-4ag", max_steps=3)
    env.reset(seed=0)
    for step in range(1, 4):
        _, _, terminations, truncations, _ = env.step(noop_actions(env) or {})
        assert not any(terminations.values())
        assert all(truncations.values()) == (step == 3)
    assert env.agents == []
    with pytest.raises(RuntimeError):
        env.step({})
    env.reset()
    assert env.agents == env.possible_agents


def test_default_time_limit_is_500(impl):
    env = make(impl, "tiny-4ag")
    assert env.max_steps == 500


def test_same_seed_same_trajectory(impl):
    env = make(impl, "tiny-4ag-hard")
    trace_1, colours_1 = random_rollout(env, seed=7, steps=60)
    random_rollout(env, seed=8, steps=10)
    env.reset()  # an unseeded reset in between must not matter either
    trace_2, colours_2 = random_rollout(env, seed=7, steps=60)
    np.testing.assert_array_equal(colours_1, colours_2)
    assert len(trace_1) == len(trace_2)
    for a, b in zip(trace_1, trace_2):
        np.testing.assert_array_equal(a, b)
    fresh_trace, _ = random_rollout(make(impl, "tiny-4ag-hard"), seed=7, steps=60)
    for a, b in zip(trace_1, fresh_trace):
        np.testing.assert_array_equal(a, b)
    _, other_colours = random_rollout(env, seed=9, steps=1)
    assert not np.array_equal(colours_1, other_colours)


def test_batch_of_copies_steps_them_independently():
    env = ColouredWarehouse("tiny-4ag", max_steps=20)
    batch = env.make_batched(3)
    assert isinstance(batch, ColouredWarehouseBatch) and batch.num_copies == 3
    batch.reset_copies(np.arange(3), [5, 6, 5])
    obs = batch.observations()
    assert obs.shape == (3, 4, 44) and obs.dtype == np.float32
    np.testing.assert_array_equal(obs[0], obs[2])
    assert not np.array_equal(obs[0], obs[1])
    actions = np.random.default_rng(0).integers(5, size=(3, 4))
    rewards, terminated, truncated = batch.step_copies(actions, np.array([True, True, False]))
    assert rewards.shape == (3, 4) and rewards.dtype == np.float64
    assert not terminated.any() and not truncated.any()
    np.testing.assert_array_equal(batch.observations()[2], obs[2])  # inactive: unchanged
    assert batch.steps.tolist() == [1, 1, 0]


# ---------------------------------------------------------------------- configuration


@pytest.mark.parametrize(
    "task, n_agents, grid, n_shelves, queue",
    [
        ("tiny-4ag", 4, (11, 10), 32, 4),
        ("tiny-4ag-hard", 4, (11, 10), 32, 2),
        ("small-8ag", 8, (20, 10), 80, 8),
        ("medium-16ag", 16, (20, 16), 144, 16),
    ],
)
def test_named_tasks(task, n_agents, grid, n_shelves, queue, impl):
    env = from_config(impl, {"task": task})
    env.reset(seed=0)
    assert env.possible_agents == [f"agent_{i}" for i in range(n_agents)]
    assert env.n_colours == 2
    assert env.grid_size == grid
    assert len(env.world_state().shelf_x) == n_shelves
    assert len(request_queue(env)) == queue
    assert env.max_steps == 500


def test_arbitrary_config(impl):
    env = from_config(impl, {"size": "medium", "n_agents": 6, "n_colours": 3, "difficulty": "easy", "max_steps": 100})
    env.reset(seed=0)
    assert len(request_queue(env)) == 12
    assert env.agent_colours == [0, 0, 1, 1, 2, 2]
    assert env.max_steps == 100
    large = make(impl, size="large", n_agents=2)
    assert large.grid_size == (29, 16)


@pytest.mark.parametrize(
    "config, key",
    [
        ({"n_agent": 4}, "n_agents"),
        ({"colours": 2}, "n_colours"),
        ({"n_agents": 2, "n_colours": 3}, "n_colours"),
        ({"n_agents": 8, "n_colours": 5}, "n_colours"),
        ({"n_colours": 0}, "n_colours"),
        ({"size": "huge"}, "size"),
        ({"size": "tiny", "n_agents": 40}, "n_agents"),
        ({"size": "tiny", "n_agents": 20, "difficulty": "easy"}, "n_agents"),
        ({"n_agents": 0}, "n_agents"),
        ({"task": "tiny-4ag", "size": "small"}, "task"),
        ({"task": "tiny-4ag", "n_agents": 4}, "task"),
        ({"task": "huge-4ag"}, "task"),
        ({"difficulty": "extreme"}, "difficulty"),
        ({"max_steps": 0}, "max_steps"),
        ({"permutation_seed": "a"}, "permutation_seed"),
        ({"permute_observations": "yes"}, "permute_observations"),
        ({"implementation": "torch"}, "implementation"),
        ({"implementaton": "numpy"}, "implementaton"),
    ],
)
def test_bad_config_names_the_key(config, key):
    with pytest.raises(EnvConfigError, match=f"'{key}'"):
        ColouredWarehouse.from_config(config)
    if "implementation" not in config:
        with pytest.raises(EnvConfigError, match=f"'{key}'"):
            ColouredWarehouse.from_config({**config, "implementation": "upstream"})


def test_task_conflict_names_the_clashing_key():
    with pytest.raises(EnvConfigError, match="size"):
        ColouredWarehouse.from_config({"task": "small-8ag", "size": "small"})


def test_implementation_key_picks_the_class():
    assert type(ColouredWarehouse.from_config({"task": "tiny-4ag"})) is ColouredWarehouse
    assert type(ColouredWarehouse.from_config({"implementation": "numpy"})) is ColouredWarehouse
    upstream = ColouredWarehouse.from_config({"task": "small-8ag", "implementation": "upstream"})
    assert type(upstream) is UpstreamColouredWarehouse
    assert upstream.grid_size == (20, 10) and upstream.possible_agents == [f"agent_{i}" for i in range(8)]
