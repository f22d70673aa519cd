"""LBF with persistent levels: API conformance and semantics on the real lbforaging engine."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_adaps.envs import EnvConfigError, OrderedParallelEnv, make_parallel_env
from rllib_adaps.envs.lbf import PersistentLevelForaging

LEVELS = [1, 1, 2, 2, 3, 3, 4, 4]


def own_level(obs, foods=4):
    return obs[3 * foods + 2]  # self is the first player slot: (y, x, level)


@pytest.mark.parametrize("config", [{}, {"levels": [1, 2, 3], "grid_size": 6, "foods": 2, "sight": 2}, {"players": 5, "level_seed": 3, "force_coop": True}])
def test_parallel_api_and_rllib_checks(config):
    parallel_api_test(PersistentLevelForaging.from_config(config), num_cycles=100)
    check_multiagent_environments(OrderedParallelEnv(PersistentLevelForaging.from_config(config)))


def test_levels_persist_across_resets_and_show_in_own_observation():
    env = PersistentLevelForaging.from_config({"levels": LEVELS})
    positions = set()
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert [own_level(obs[a]) for a in env.agents] == LEVELS
        assert [p.level for p in env._env.players] == LEVELS
        positions.add(tuple(obs["agent_0"][12:14]))
    assert len(positions) > 5  # positions are still random per reset


def test_levels_drawn_once_from_seed():
    a = PersistentLevelForaging.from_config({"players": 6, "level_seed": 7, "max_player_level": 3})
    b = PersistentLevelForaging.from_config({"players": 6, "level_seed": 7, "max_player_level": 3})
    assert a.levels == b.levels and all(1 <= lv <= 3 for lv in a.levels)
    for seed in (0, 1):
        obs, _ = a.reset(seed=seed)
        assert [own_level(obs[ag]) for ag in a.agents] == a.levels


def test_true_types_follow_levels():
    env = PersistentLevelForaging.from_config({"levels": [3, 1, 3, 2]})
    assert env.true_agent_types == {"agent_0": 2, "agent_1": 0, "agent_2": 2, "agent_3": 1}


def test_time_limit_is_truncation_not_termination():
    env = PersistentLevelForaging.from_config({"levels": [1, 1], "grid_size": 8, "foods": 1, "max_steps": 5, "force_coop": True})
    env.reset(seed=0)
    for t in range(5):
        _, _, term, trunc, _ = env.step({a: 0 for a in env.agents})
    assert all(trunc.values()) and not any(term.values())
    assert env.agents == []


def test_eating_all_food_is_termination():
    env = PersistentLevelForaging.from_config({"levels": [3, 3], "grid_size": 5, "foods": 1, "max_food_level": 1, "max_steps": 500})
    rng = np.random.default_rng(0)
    env.reset(seed=1)
    total = 0.0
    for _ in range(500):
        _, rew, term, trunc, _ = env.step({a: int(rng.integers(6)) for a in env.agents})
        total += sum(rew.values())
        if any(term.values()) or any(trunc.values()):
            break
    assert all(term.values()) and not any(trunc.values())
    assert total == pytest.approx(1.0)  # normalised returns of one episode sum to 1


def test_same_seed_same_trajectory():
    def rollout(seed):
        env = PersistentLevelForaging.from_config({})
        obs, _ = env.reset(seed=seed)
        rng = np.random.default_rng(0)
        trace = [np.concatenate(list(obs.values()))]
        for _ in range(30):
            obs, rew, term, trunc, _ = env.step({a: int(rng.integers(6)) for a in env.agents})
            trace.append(np.concatenate(list(obs.values()) + [list(rew.values())]))
            if any(term.values()) or any(trunc.values()):
                break
        return np.concatenate(trace)

    np.testing.assert_array_equal(rollout(5), rollout(5))
    assert not np.array_equal(rollout(5), rollout(6))


@pytest.mark.parametrize(
    "config, key",
    [
        ({"grid": 10}, "grid_size"),
        ({"levels": [1, 2, 3], "players": 4}, "players"),
        ({"levels": [1, 0, 2]}, "levels"),
        ({"grid_size": 2}, "grid_size"),
        ({"levels": [1] * 20, "grid_size": 4, "foods": 1}, "grid_size"),
        ({"sight": 0}, "sight"),
        ({"max_steps": 0}, "max_steps"),
        ({"force_coop": "yes"}, "force_coop"),
        ({"penalty": -1}, "penalty"),
        ({"players": 3, "min_player_level": 3, "max_player_level": 2}, "max_player_level"),
    ],
)
def test_bad_config_names_the_key(config, key):
    with pytest.raises(EnvConfigError, match=key):
        make_parallel_env("lbf", config)
