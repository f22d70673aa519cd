"""The numpy LBF equals the lbforaging-based one step for step: same seeds, same actions, same
observations, rewards and episode ends, through seedless resets; also in hand-made states that
hit upstream's conflict and loading rules, and with many copies stepped at once."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_adaps.envs.lbf import (
    EAST,
    LOAD,
    NONE,
    NORTH,
    SOUTH,
    WEST,
    PersistentLevelForaging,
)
from rllib_adaps.envs.lbf_upstream import UpstreamLevelForaging

MOVES = {NORTH: (-1, 0), SOUTH: (1, 0), WEST: (0, -1), EAST: (0, 1)}


def pair(config):
    ours = PersistentLevelForaging.from_config({**config, "implementation": "numpy"})
    theirs = PersistentLevelForaging.from_config({**config, "implementation": "upstream"})
    assert isinstance(theirs, UpstreamLevelForaging)
    return ours, theirs


def stacked(observations, agents):
    return np.stack([observations[agent] for agent in agents])


class Events:
    """What the biased actions made happen, read from the upstream env."""

    def __init__(self):
        self.contested = self.loads = self.failed_loads = self.overlaps = 0

    def count(self, env, actions, rewards):
        positions = [tuple(map(int, p.position)) for p in env._env.players]
        targets = []
        for position, action in zip(positions, actions):
            dr, dc = MOVES.get(action, (0, 0))
            targets.append((position[0] + dr, position[1] + dc))
        self.contested += len(set(targets)) < len(targets)
        self.loads += any(r > 0 for r in rewards)
        self.failed_loads += any(r < 0 for r in rewards)


def biased_actions(env, rng):
    """Random actions that crowd agents around food: LOAD next to food, else mostly a step
    towards the nearest food, so loads, failed loads and contested cells are common."""
    field = env._env.field
    foods = np.argwhere(field > 0)
    actions = []
    for player in env._env.players:
        row, col = map(int, player.position)
        if env._env.adjacent_food(row, col) > 0 and rng.random() < 0.6:
            actions.append(LOAD)
            continue
        if len(foods) and rng.random() < 0.6:
            target = foods[np.abs(foods - (row, col)).sum(axis=1).argmin()]
            options = [a for a, (dr, dc) in MOVES.items() if (target[0] - row) * dr > 0 or (target[1] - col) * dc > 0]
            actions.append(int(rng.choice(options)) if options else LOAD)
            continue
        actions.append(int(rng.choice(6, p=[0.1, 0.15, 0.15, 0.15, 0.15, 0.3])))
    return actions


CONFIGS = [
    ({}, 700),
    ({"grid_size": 8, "levels": [1, 1, 2, 2, 3, 3], "foods": 3}, 700),
    ({"grid_size": 15, "players": 10, "foods": 5}, 500),
    ({"sight": 2, "penalty": 0.25}, 600),
    ({"grid_size": 12, "players": 9, "foods": 4, "sight": 3, "level_seed": 2}, 500),
    ({"grid_size": 7, "levels": [1, 2, 3, 1], "foods": 2, "sight": 1, "observe_agent_levels": False}, 600),
    ({"force_coop": True, "penalty": 0.5, "grid_size": 8, "levels": [1, 2, 2, 3, 4], "foods": 3}, 600),
    ({"max_food_level": 2, "penalty": 0.1, "normalize_reward": False, "max_steps": 30}, 600),
    ({"levels": [3, 3], "grid_size": 5, "foods": 4, "max_food_level": 1, "max_steps": 20}, 400),  # food does not fit
]


@pytest.mark.parametrize(("config", "steps"), CONFIGS)
def test_random_play_is_exact(config, steps):
    ours, theirs = pair(config)
    agents = ours.possible_agents
    assert ours.observation_space(agents[0]) == theirs.observation_space(agents[0])
    assert ours.true_agent_types == theirs.true_agent_types and ours.levels == theirs.levels
    rng = np.random.default_rng(len(agents))
    events = Events()
    seed = 11
    obs_ours, _ = ours.reset(seed=seed)
    obs_theirs, _ = theirs.reset(seed=seed)
    episodes = 1
    for step in range(steps):
        np.testing.assert_array_equal(stacked(obs_ours, agents), stacked(obs_theirs, agents), err_msg=f"step {step}")
        joint = biased_actions(theirs, rng)
        actions = {agent: action for agent, action in zip(agents, joint) if rng.random() > 0.03}  # missing -> NONE
        obs_ours, rew_ours, term_ours, trunc_ours, _ = ours.step(actions)
        obs_theirs, rew_theirs, term_theirs, trunc_theirs, _ = theirs.step(actions)
        events.count(theirs, [actions.get(agent, NONE) for agent in agents], list(rew_theirs.values()))
        assert rew_ours == rew_theirs, f"step {step}"
        assert term_ours == term_theirs and trunc_ours == trunc_theirs, f"step {step}"
        if any(term_ours.values()) or any(trunc_ours.values()):
            np.testing.assert_array_equal(stacked(obs_ours, agents), stacked(obs_theirs, agents))
            # Seedless resets mostly; now and then a seed, which must also agree mid-stream.
            seed = 100 + step if episodes % 4 == 0 else None
            obs_ours, _ = ours.reset(seed=seed)
            obs_theirs, _ = theirs.reset(seed=seed)
            episodes += 1
    assert episodes >= 3
    assert events.contested > 0 and events.loads > 0
    if config.get("penalty"):
        assert events.failed_loads > 0


# ------------------------------------------------------------------------ hand-made states


def place(ours, theirs, players, foods):
    """Puts players at ``players`` [(row, col)] and foods [(row, col, level)] in both envs."""
    env = theirs._env
    env.field[:] = 0
    for row, col, level in foods:
        env.field[row, col] = level
    for player, position in zip(env.players, players):
        player.position = position
    env._food_spawned = env.field.sum()
    env._gen_valid_moves()
    ours.core.place(0, players, foods)


def setup(config, players, foods, seed=0):
    ours, theirs = pair(config)
    ours.reset(seed=seed)
    theirs.reset(seed=seed)
    place(ours, theirs, players, foods)
    return ours, theirs


def step_both(ours, theirs, joint):
    actions = dict(zip(ours.possible_agents, joint))
    result_ours = ours.step(actions)
    result_theirs = theirs.step(actions)
    agents = ours.possible_agents
    np.testing.assert_array_equal(stacked(result_ours[0], agents), stacked(result_theirs[0], agents))
    assert result_ours[1:4] == result_theirs[1:4]
    positions = [tuple(map(int, p.position)) for p in theirs._env.players]
    assert ours.core.player_cells(0) == positions
    return positions, result_ours[1]


LINE = {"levels": [1, 1, 1, 2], "grid_size": 8, "foods": 1}
FAR_FOOD = [(6, 6, 2)]


def test_two_movers_into_one_cell_both_stay():
    ours, theirs = setup(LINE, [(2, 2), (2, 4), (0, 0), (7, 7)], FAR_FOOD)
    positions, _ = step_both(ours, theirs, [EAST, WEST, NONE, NONE])
    assert positions[:2] == [(2, 2), (2, 4)]


def test_swap_is_allowed():
    ours, theirs = setup(LINE, [(2, 2), (2, 3), (0, 0), (7, 7)], FAR_FOOD)
    positions, _ = step_both(ours, theirs, [EAST, WEST, NONE, NONE])
    assert positions[:2] == [(2, 3), (2, 2)]


def test_mover_into_staying_agent_fails_but_follows_a_leaving_one():
    ours, theirs = setup(LINE, [(2, 2), (2, 3), (4, 2), (4, 3)], FAR_FOOD)
    positions, _ = step_both(ours, theirs, [EAST, LOAD, EAST, EAST])  # LOAD without food: NONE
    assert positions == [(2, 2), (2, 3), (4, 3), (4, 4)]


def test_mover_onto_an_agent_whose_move_failed_shares_its_cell():
    ours, theirs = setup(LINE, [(1, 1), (1, 3), (0, 1), (7, 7)], FAR_FOOD)
    positions, _ = step_both(ours, theirs, [EAST, WEST, SOUTH, NONE])
    assert positions[:3] == [(1, 1), (1, 3), (1, 1)]
    positions, _ = step_both(ours, theirs, [NONE, NONE, EAST, NORTH])  # and can leave again
    assert positions[:3] == [(1, 1), (1, 3), (1, 2)]


def test_moves_into_food_or_off_the_grid_are_none():
    ours, theirs = setup(LINE, [(3, 4), (0, 0), (7, 7), (3, 6)], [(3, 5, 2)])
    positions, _ = step_both(ours, theirs, [EAST, NORTH, SOUTH, WEST])
    assert positions == [(3, 4), (0, 0), (7, 7), (3, 6)]


def test_load_without_enough_level_costs_the_penalty():
    config = {**LINE, "penalty": 0.3}
    ours, theirs = setup(config, [(4, 3), (3, 4), (0, 0), (5, 4)], [(4, 4, 3)])
    _, rewards = step_both(ours, theirs, [LOAD, LOAD, LOAD, NONE])  # 1 + 1 < 3; agent_2 has no food
    assert list(rewards.values()) == [-0.3, -0.3, 0.0, 0.0]
    assert theirs._env.field[4, 4] == 3


def test_joint_load_shares_by_level():
    config = {**LINE, "foods": 2}
    foods = [(4, 4, 3), (1, 1, 1)]
    ours, theirs = setup(config, [(4, 3), (0, 0), (2, 2), (5, 4)], foods)
    _, rewards = step_both(ours, theirs, [LOAD, NONE, NONE, LOAD])  # levels 1 + 2 >= 3
    spawned = 4.0
    assert list(rewards.values()) == [1 * 3 / (3 * spawned), 0.0, 0.0, 2 * 3 / (3 * spawned)]
    assert theirs._env.field[4, 4] == 0
    # Moving next to the last food and loading it alone ends the episode.
    step_both(ours, theirs, [NONE, EAST, NONE, NONE])
    _, rewards = step_both(ours, theirs, [NONE, LOAD, NONE, NONE])
    assert rewards["agent_1"] == 1 / spawned and not ours.agents and not theirs.agents


def test_partial_sight_near_the_edges():
    config = {"levels": [1, 2, 3, 4, 1], "grid_size": 9, "foods": 3, "sight": 2}
    players = [(0, 0), (4, 4), (8, 8), (0, 4), (4, 0)]
    foods = [(2, 2, 1), (6, 6, 2), (2, 6, 3)]
    ours, theirs = setup(config, players, foods)
    step_both(ours, theirs, [NONE] * 5)
    seen = ours.core.observations()[0, 0, 3 * 3 :].reshape(5, 3).tolist()
    # agent_0 at (0, 0): its window starts at the edge, so it sees players up to four cells
    # away (local coordinates up to 2 * sight), not two; (8, 8) is out; the rest shift up.
    assert seen == [[0, 0, 1], [4, 4, 2], [0, 4, 4], [4, 0, 1], [-1, -1, 0]]


def test_reset_after_a_hand_made_state_and_with_the_same_seed_again():
    ours, theirs = setup(LINE, [(2, 2), (2, 3), (4, 2), (4, 3)], FAR_FOOD)
    agents = ours.possible_agents
    for seed in (5, 5, None, 5):  # old positions block cells at reset: same seed, other layout
        obs_ours, _ = ours.reset(seed=seed)
        obs_theirs, _ = theirs.reset(seed=seed)
        np.testing.assert_array_equal(stacked(obs_ours, agents), stacked(obs_theirs, agents))


# ----------------------------------------------------------------------------- many copies


@pytest.mark.parametrize("config", [{"grid_size": 8, "levels": [1, 1, 2, 2, 3, 3], "foods": 3, "max_steps": 25}, {"sight": 3, "penalty": 0.2, "max_steps": 20}])
def test_batch_equals_separate_upstream_envs_with_inactive_copies(config):
    num_copies, seed = 6, 40
    ours = PersistentLevelForaging.from_config(config)
    batch = ours.make_batched(num_copies)
    single = [UpstreamLevelForaging.from_config(config) for _ in range(num_copies)]
    agents = ours.possible_agents
    batch.reset_copies(np.arange(num_copies), [seed + c for c in range(num_copies)])
    for c, env in enumerate(single):
        observations, _ = env.reset(seed=seed + c)
        np.testing.assert_array_equal(batch.observations()[c], stacked(observations, agents))
    rng = np.random.default_rng(1)
    ends = 0
    for step in range(120):
        actions = np.array([biased_actions(env, rng) for env in single])
        active = rng.random(num_copies) < 0.75
        rewards, terminated, truncated = batch.step_copies(actions, active)
        observations = batch.observations()
        restart = []
        for c, env in enumerate(single):
            if not active[c]:
                assert not terminated[c] and not truncated[c] and not rewards[c].any()
                continue
            obs_c, rew_c, term_c, trunc_c, _ = env.step(dict(zip(agents, actions[c].tolist())))
            np.testing.assert_array_equal(observations[c], stacked(obs_c, agents), err_msg=f"step {step} copy {c}")
            np.testing.assert_array_equal(rewards[c], [rew_c[a] for a in agents])
            assert terminated[c] == term_c[agents[0]] and truncated[c] == trunc_c[agents[0]]
            if terminated[c] or truncated[c]:
                restart.append(c)
        if restart:
            ends += len(restart)
            batch.reset_copies(np.asarray(restart), [None] * len(restart))
            for c in restart:
                obs_c, _ = single[c].reset()
                np.testing.assert_array_equal(batch.observations()[c], stacked(obs_c, agents))
    assert ends >= num_copies
