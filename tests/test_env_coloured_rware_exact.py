"""The numpy C-RWARE replays the rware-based one exactly: same seeds, same episodes, step for step.

Random rollouts (biased toward FORWARD and TOGGLE_LOAD so that collisions, pick-ups, carries
and deliveries happen) compare observations, rewards, terminations, truncations and the full
world state every step; targeted tests put both envs into one hand-made state and check each
rule of rware; a batch of copies with some inactive copies is checked against separate envs.
"""

from __future__ import annotations

import numpy as np
import pytest

from rllib_adaps.envs.coloured_rware import (
    DIR_LEFT,
    DIR_RIGHT,
    DOWN,
    FORWARD,
    LEFT,
    NOOP,
    RIGHT,
    TOGGLE_LOAD,
    UP,
    ColouredWarehouse,
)
from rllib_adaps.envs.coloured_rware_upstream import UpstreamColouredWarehouse

#: NOOP, FORWARD, LEFT, RIGHT, TOGGLE_LOAD
BIASED = np.array([0.1, 0.45, 0.1, 0.1, 0.25])


def paired(seed: int, *args, **kwargs):
    """A numpy env and an upstream env of one config, both reset with ``seed``."""
    ours, theirs = ColouredWarehouse(*args, **kwargs), UpstreamColouredWarehouse(*args, **kwargs)
    obs_ours, _ = ours.reset(seed=seed)
    obs_theirs, _ = theirs.reset(seed=seed)
    assert_same_obs(obs_ours, obs_theirs)
    assert ours.world_state().equals(theirs.world_state())
    return ours, theirs


def assert_same_obs(ours: dict, theirs: dict) -> None:
    assert list(ours) == list(theirs)
    for agent in ours:
        assert ours[agent].dtype == theirs[agent].dtype == np.float32
        np.testing.assert_array_equal(ours[agent], theirs[agent], err_msg=agent)


def step_both(ours, theirs, actions: dict):
    """One step of both; asserts identical results and world states; returns the numpy results."""
    result_ours = ours.step(actions)
    result_theirs = theirs.step(actions)
    assert_same_obs(result_ours[0], result_theirs[0])
    for index in (1, 2, 3):
        assert result_ours[index] == result_theirs[index]
    state_ours, state_theirs = ours.world_state(), theirs.world_state()
    assert state_ours.equals(state_theirs), (state_ours, state_theirs)
    return result_ours


def raw_step(ours, theirs, raw_actions: list[int]):
    """Steps both with rware's raw actions (undoing each colour's rotation)."""
    actions = {
        agent: (raw + colour) % 5 for agent, raw, colour in zip(ours.possible_agents, raw_actions, ours.agent_colours)
    }
    return step_both(ours, theirs, actions)


def set_both(ours, theirs, edit) -> None:
    """Applies ``edit(state)`` to the shared state and puts it into both envs."""
    state = ours.world_state()
    edit(state)
    ours.set_world_state(state)
    theirs.set_world_state(state.copy())
    assert ours.world_state().equals(theirs.world_state())


def place(state, placements, carrying=None) -> None:
    """Agents at (x, y, direction); shelves carried per ``carrying`` (agent -> shelf), others dropped."""
    for i, (x, y, direction) in enumerate(placements):
        state.agent_x[i], state.agent_y[i], state.agent_dir[i] = x, y, direction
    state.carrying[:] = -1
    for agent, shelf in (carrying or {}).items():
        state.carrying[agent] = shelf
        state.shelf_x[shelf], state.shelf_y[shelf] = state.agent_x[agent], state.agent_y[agent]


def shelf_at(state, x: int, y: int) -> int:
    return int(np.flatnonzero((state.shelf_x == x) & (state.shelf_y == y))[0])


def positions(env) -> list[tuple[int, int]]:
    state = env.world_state()
    return list(zip(state.agent_x.tolist(), state.agent_y.tolist()))


# ---------------------------------------------------------------------- random rollouts

ROLLOUTS = [
    ({"task": "tiny-4ag", "max_steps": 80}, 1400),
    ({"task": "tiny-4ag-hard", "max_steps": 60}, 900),
    ({"task": "small-8ag", "max_steps": 100}, 900),
    ({"task": "medium-16ag", "max_steps": 120}, 1000),
    ({"size": "tiny", "n_agents": 3, "n_colours": 1, "max_steps": 50}, 400),
    ({"size": "small", "n_agents": 6, "n_colours": 3, "difficulty": "easy", "max_steps": 70}, 400),
    ({"size": "tiny", "n_agents": 8, "n_colours": 4, "max_steps": 70}, 500),
]


@pytest.mark.parametrize("config, steps", ROLLOUTS, ids=[str(c) for c, _ in ROLLOUTS])
def test_random_rollouts_are_identical(config, steps):
    config = dict(config)
    task = config.pop("task", None)
    ours, theirs = paired(17, task, **config)
    rng = np.random.default_rng(5)
    resets = rewards_paid = 0
    for _ in range(steps):
        if not ours.agents:
            assert not theirs.agents
            obs_ours, _ = ours.reset()  # seedless: both go on with their own generator
            obs_theirs, _ = theirs.reset()
            assert_same_obs(obs_ours, obs_theirs)
            resets += 1
        actions = dict(zip(ours.agents, rng.choice(5, size=len(ours.agents), p=BIASED).tolist()))
        _, rewards, *_ = step_both(ours, theirs, actions)
        rewards_paid += sum(rewards.values())
    assert resets >= 4
    # Ties (equally long chains into one cell) take rware's own networkx path; count them.
    print(f"{config}: {resets} resets, {rewards_paid:g} deliveries, {ours.core.tie_fallbacks} tie steps")


def stage_requested_carriers(state, goals, rng) -> None:
    """Random play rarely delivers: put an empty-handed agent with a requested shelf above each goal.

    It stands in the goal's queue column, 1-3 cells up, facing down; shelf colours stay as
    drawn, so right and wrong colours both happen. Occupied cells and carried shelves are skipped.
    """
    occupied = set(zip(state.agent_x.tolist(), state.agent_y.tolist()))
    for goal_x, goal_y in goals:
        agent = int(rng.integers(len(state.agent_x)))
        shelf = int(rng.choice(state.request_queue))
        cell = (goal_x, goal_y - int(rng.integers(1, 4)))
        if cell in occupied or state.carrying[agent] >= 0 or shelf in state.carrying:
            continue
        occupied.discard((int(state.agent_x[agent]), int(state.agent_y[agent])))
        occupied.add(cell)
        state.agent_x[agent], state.agent_y[agent], state.agent_dir[agent] = cell[0], cell[1], DOWN
        state.carrying[agent] = shelf
        state.shelf_x[shelf], state.shelf_y[shelf] = cell


@pytest.mark.parametrize("task", ["tiny-4ag", "tiny-4ag-hard", "small-8ag", "medium-16ag"])
def test_random_rollouts_with_deliveries_are_identical(task):
    ours, theirs = paired(29, task, max_steps=60)
    rng = np.random.default_rng(11)
    paid = 0.0
    for t in range(360):
        if not ours.agents:
            assert_same_obs(ours.reset()[0], theirs.reset()[0])
        if t % 12 == 0:
            set_both(ours, theirs, lambda s: stage_requested_carriers(s, ours.goals, rng))
        actions = dict(zip(ours.agents, rng.choice(5, size=len(ours.agents), p=BIASED).tolist()))
        _, rewards, *_ = step_both(ours, theirs, actions)
        paid += sum(rewards.values())
    print(f"{task}: {paid:g} deliveries, {ours.core.tie_fallbacks} tie steps")
    assert paid >= 2


def test_ties_and_deliveries_occur_under_random_actions():
    """Biased random play on medium-16ag meets both rare paths: ties and paid deliveries."""
    batch = ColouredWarehouse("medium-16ag", max_steps=200).make_batched(16)
    batch.reset_copies(np.arange(16), list(range(16)))
    rng = np.random.default_rng(0)
    active = np.ones(16, dtype=bool)
    paid = 0.0
    for _ in range(400):
        actions = rng.choice(5, size=(16, 16), p=BIASED)
        rewards, _, truncated = batch.step_copies(actions, active)
        paid += rewards.sum()
        if truncated.any():
            batch.reset_copies(np.flatnonzero(truncated), [None] * int(truncated.sum()))
    assert batch.tie_fallbacks > 0
    assert paid > 0


# ---------------------------------------------------------------------- batch vs separate envs


def test_batch_equals_separate_envs_with_inactive_copies():
    copies, seed = 6, 40
    env = ColouredWarehouse("tiny-4ag", max_steps=30)
    batch = env.make_batched(copies)
    batch.reset_copies(np.arange(copies), [seed + c for c in range(copies)])
    singles = [UpstreamColouredWarehouse("tiny-4ag", max_steps=30) for _ in range(copies)]
    single_obs = [single.reset(seed=seed + c)[0] for c, single in enumerate(singles)]
    agents = env.possible_agents
    rng = np.random.default_rng(3)
    for _ in range(250):
        for c in range(copies):
            np.testing.assert_array_equal(batch.observations()[c], np.stack([single_obs[c][a] for a in agents]))
        active = rng.random(copies) < 0.7
        actions = rng.choice(5, size=(copies, len(agents)), p=BIASED)
        rewards, terminated, truncated = batch.step_copies(actions, active)
        for c, single in enumerate(singles):
            if not active[c]:
                assert not truncated[c] and not rewards[c].any()
                continue
            obs, single_rewards, terms, truncs, _ = single.step(dict(zip(agents, actions[c].tolist())))
            single_obs[c] = obs
            np.testing.assert_array_equal(rewards[c], [single_rewards[a] for a in agents])
            assert terminated[c] == any(terms.values()) and truncated[c] == all(truncs.values())
            assert batch.copy_state(c).equals(single.world_state())
        ended = np.flatnonzero(truncated)
        if len(ended):
            batch.reset_copies(ended, [None] * len(ended))
            for c in ended.tolist():
                single_obs[c] = singles[c].reset()[0]


# ---------------------------------------------------------------------- collisions, one rule at a time


def test_two_agents_into_one_cell_one_wins_as_in_rware():
    # Highway row y=0: agent 0 at (1,0) facing right, agent 1 at (3,0) facing left, both into (2,0).
    for seed in range(6):
        ours, theirs = paired(seed, "tiny-4ag")
        set_both(
            ours,
            theirs,
            lambda s: place(s, [(1, 0, DIR_RIGHT), (3, 0, DIR_LEFT), (6, 0, UP), (9, 0, UP)]),
        )
        raw_step(ours, theirs, [FORWARD, FORWARD, NOOP, NOOP])
        moved = [p != q for p, q in zip(positions(ours)[:2], [(1, 0), (3, 0)])]
        assert sum(moved) == 1
        assert (2, 0) in positions(ours)


def test_longer_chain_wins_the_cell():
    ours, theirs = paired(0, "tiny-4ag")
    # Agents 0 -> 1 -> (3,0); agent 2 from (4,0) also into (3,0): the chain of two wins.
    set_both(ours, theirs, lambda s: place(s, [(1, 0, DIR_RIGHT), (2, 0, DIR_RIGHT), (4, 0, DIR_LEFT), (9, 0, UP)]))
    raw_step(ours, theirs, [FORWARD, FORWARD, FORWARD, NOOP])
    assert positions(ours)[:3] == [(2, 0), (3, 0), (4, 0)]


def test_swap_moves_nobody():
    ours, theirs = paired(1, "tiny-4ag")
    set_both(ours, theirs, lambda s: place(s, [(1, 0, DIR_RIGHT), (2, 0, DIR_LEFT), (0, 1, DOWN), (9, 0, UP)]))
    # Agent 2 at (0,1) heads into (0,2); agent 3 from the side is not involved.
    raw_step(ours, theirs, [FORWARD, FORWARD, FORWARD, NOOP])
    assert positions(ours)[:3] == [(1, 0), (2, 0), (0, 2)]


def test_agent_following_a_swap_stays():
    ours, theirs = paired(2, "tiny-4ag")
    set_both(ours, theirs, lambda s: place(s, [(1, 0, DIR_RIGHT), (2, 0, DIR_LEFT), (0, 0, DIR_RIGHT), (9, 0, UP)]))
    raw_step(ours, theirs, [FORWARD, FORWARD, FORWARD, NOOP])
    assert positions(ours)[:3] == [(1, 0), (2, 0), (0, 0)]


def test_cycle_of_four_rotates_and_its_tail_stays():
    ours, theirs = paired(3, size="tiny", n_agents=5, n_colours=2)
    square = [(0, 0, DIR_RIGHT), (1, 0, DOWN), (1, 1, DIR_LEFT), (0, 1, UP)]
    set_both(ours, theirs, lambda s: place(s, square + [(2, 0, DIR_LEFT)]))  # agent 4 heads into the cycle
    raw_step(ours, theirs, [FORWARD] * 5)
    assert positions(ours) == [(1, 0), (1, 1), (0, 1), (0, 0), (2, 0)]


def test_chain_moves_and_chain_into_a_standing_agent_does_not():
    ours, theirs = paired(4, "tiny-4ag")
    set_both(ours, theirs, lambda s: place(s, [(1, 0, DIR_RIGHT), (2, 0, DIR_RIGHT), (3, 0, DIR_RIGHT), (9, 0, UP)]))
    raw_step(ours, theirs, [FORWARD, FORWARD, FORWARD, NOOP])
    assert positions(ours) == [(2, 0), (3, 0), (4, 0), (9, 0)]
    raw_step(ours, theirs, [FORWARD, FORWARD, LEFT, NOOP])  # the head turns instead
    assert positions(ours) == [(2, 0), (3, 0), (4, 0), (9, 0)]


def test_wall_bump_stays_and_blocks_followers():
    ours, theirs = paired(5, "tiny-4ag")
    set_both(ours, theirs, lambda s: place(s, [(9, 0, DIR_RIGHT), (8, 0, DIR_RIGHT), (0, 0, UP), (0, 10, DOWN)]))
    raw_step(ours, theirs, [FORWARD, FORWARD, FORWARD, FORWARD])
    assert positions(ours) == [(9, 0), (8, 0), (0, 0), (0, 10)]


# ---------------------------------------------------------------------- shelves


def test_carrier_is_blocked_by_a_standing_shelf_but_not_by_a_moving_carrier():
    ours, theirs = paired(6, "tiny-4ag")
    state = ours.world_state()
    shelf_a, shelf_b = shelf_at(state, 1, 1), shelf_at(state, 2, 1)
    # Agent 0 carries shelf_a on the highway (0, 2) facing right, into (1, 2): a standing shelf.
    set_both(
        ours,
        theirs,
        lambda s: place(s, [(0, 2, DIR_RIGHT), (0, 0, DIR_RIGHT), (3, 3, UP), (9, 0, UP)], carrying={0: shelf_a}),
    )
    raw_step(ours, theirs, [FORWARD, NOOP, NOOP, NOOP])
    assert positions(ours)[0] == (0, 2)
    # Two carriers in a row on the highway: the follower enters the leader's vacated cell.
    set_both(
        ours,
        theirs,
        lambda s: place(s, [(0, 0, DIR_RIGHT), (1, 0, DIR_RIGHT), (3, 3, UP), (9, 0, UP)], carrying={0: shelf_a, 1: shelf_b}),
    )
    raw_step(ours, theirs, [FORWARD, FORWARD, NOOP, NOOP])
    assert positions(ours)[:2] == [(1, 0), (2, 0)]
    state = ours.world_state()
    assert (state.shelf_x[shelf_a], state.shelf_y[shelf_a]) == (1, 0)
    # A carrier cannot enter the cell of a carrier that stays (it unloads there instead: refused).
    raw_step(ours, theirs, [FORWARD, TOGGLE_LOAD, NOOP, NOOP])
    assert positions(ours)[:2] == [(1, 0), (2, 0)]
    assert ours.world_state().carrying[:2].tolist() == [shelf_a, shelf_b]


def test_pick_up_carry_and_unload_refused_on_highway():
    ours, theirs = paired(7, "tiny-4ag")
    state = ours.world_state()
    shelf = shelf_at(state, 1, 1)
    set_both(ours, theirs, lambda s: place(s, [(1, 1, UP), (0, 5, UP), (6, 0, UP), (9, 0, UP)]))
    raw_step(ours, theirs, [TOGGLE_LOAD, NOOP, NOOP, NOOP])
    assert ours.world_state().carrying[0] == shelf
    raw_step(ours, theirs, [FORWARD, NOOP, NOOP, NOOP])  # onto the highway row y=0, shelf along
    state = ours.world_state()
    assert positions(ours)[0] == (1, 0) and (state.shelf_x[shelf], state.shelf_y[shelf]) == (1, 0)
    raw_step(ours, theirs, [TOGGLE_LOAD, NOOP, NOOP, NOOP])  # no unloading on a highway
    assert ours.world_state().carrying[0] == shelf
    raw_step(ours, theirs, [RIGHT, NOOP, NOOP, NOOP])
    raw_step(ours, theirs, [RIGHT, NOOP, NOOP, NOOP])
    raw_step(ours, theirs, [FORWARD, NOOP, NOOP, NOOP])  # back into the shelf's own cell
    raw_step(ours, theirs, [TOGGLE_LOAD, NOOP, NOOP, NOOP])
    state = ours.world_state()
    assert state.carrying[0] == -1 and (state.shelf_x[shelf], state.shelf_y[shelf]) == (1, 1)
    # An empty-handed agent walks under shelves; TOGGLE_LOAD on a highway without a shelf does nothing.
    raw_step(ours, theirs, [NOOP, TOGGLE_LOAD, NOOP, NOOP])
    assert ours.world_state().carrying[1] == -1


# ---------------------------------------------------------------------- deliveries and requests


def stage_carriers(state, carriers: dict[int, tuple[int, int, int]], requested: list[int]) -> None:
    """Agent -> (shelf, colour, goal index): each carrier one step above its goal, facing it."""
    goals = ((4, 10), (5, 10))
    parked = [(x, 0, UP) for x in range(len(state.agent_x))]
    carrying = {}
    for agent, (shelf, colour, goal) in carriers.items():
        parked[agent] = (goals[goal][0], goals[goal][1] - 1, DOWN)
        state.shelf_colours[shelf] = colour
        carrying[agent] = shelf
    place(state, parked, carrying)
    state.request_queue[: len(requested)] = requested


@pytest.mark.parametrize("right_colour", [True, False])
def test_delivery_of_right_and_wrong_colour(right_colour):
    ours, theirs = paired(8, "tiny-4ag")  # colours [0, 0, 1, 1]
    state = ours.world_state()
    shelf = next(s for s in range(32) if s not in state.request_queue)
    colour = 1 if right_colour else 0
    set_both(ours, theirs, lambda s: stage_carriers(s, {2: (shelf, colour, 0)}, requested=[shelf]))
    _, rewards, *_ = raw_step(ours, theirs, [NOOP, NOOP, FORWARD, NOOP])
    assert rewards["agent_2"] == (1.0 if right_colour else 0.0)
    assert (shelf in ours.world_state().request_queue) != right_colour


def test_two_deliveries_in_one_step_refresh_the_queue_in_goal_order():
    for seed in range(8):
        ours, theirs = paired(seed, "tiny-4ag-hard")  # two requests
        state = ours.world_state()
        queue = state.request_queue.tolist()
        set_both(
            ours,
            theirs,
            lambda s, queue=queue: stage_carriers(s, {0: (queue[0], 0, 1), 3: (queue[1], 1, 0)}, requested=queue),
        )
        _, rewards, *_ = raw_step(ours, theirs, [FORWARD, NOOP, NOOP, FORWARD])
        assert rewards == {"agent_0": 1.0, "agent_1": 0.0, "agent_2": 0.0, "agent_3": 1.0}
        new_queue = ours.world_state().request_queue.tolist()
        assert len(set(new_queue)) == 2 and queue[0] not in new_queue  # queue[1] may come back
        # Both generators were drawn from alike: the next seedless reset is the same too.
        assert_same_obs(ours.reset()[0], theirs.reset()[0])
        assert ours.world_state().equals(theirs.world_state())


def test_seeded_and_seedless_resets_replay_rware_draws():
    for config in ({"task": "medium-16ag"}, {"size": "small", "n_agents": 7, "n_colours": 3, "difficulty": "easy"}):
        config = dict(config)
        task = config.pop("task", None)
        ours, theirs = paired(123, task, **config)
        for seed in (None, None, 9, None, 2**40):
            assert_same_obs(ours.reset(seed=seed)[0], theirs.reset(seed=seed)[0])
            assert ours.world_state().equals(theirs.world_state())
