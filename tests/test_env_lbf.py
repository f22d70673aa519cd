"""LBF with persistent levels: API conformance and semantics, on both implementations (numpy and
the lbforaging engine). Step-for-step equality of the two: ``test_env_lbf_exact.py``."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test
from ray.rllib.utils.pre_checks.env import check_multiagent_environments

from rllib_adaps.envs import EnvConfigError, OrderedParallelEnv, make_parallel_env
from rllib_adaps.envs.lbf import PersistentLevelForaging
from rllib_adaps.envs.lbf_upstream import UpstreamLevelForaging

LEVELS = [1, 1, 2, 2, 3, 3, 4, 4]
IMPLEMENTATIONS = ["numpy", "upstream"]


def make(config, implementation):
    return PersistentLevelForaging.from_config({**config, "implementation": implementation})


def own_level(obs, foods=4):
    return obs[3 * foods + 2]  # self is the first player slot: (y, x, level)


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
@pytest.mark.parametrize("config", [{}, {"levels": [1, 2, 3], "grid_size": 6, "foods": 2, "sight": 2}, {"players": 5, "level_seed": 3, "force_coop": True}])
def test_parallel_api_and_rllib_checks(config, implementation):
    parallel_api_test(make(config, implementation), num_cycles=100)
    check_multiagent_environments(OrderedParallelEnv(make(config, implementation)))


def test_implementation_picks_the_class():
    assert type(PersistentLevelForaging.from_config({})) is PersistentLevelForaging
    assert type(make({}, "numpy")) is PersistentLevelForaging
    assert type(make({}, "upstream")) is UpstreamLevelForaging
    assert type(UpstreamLevelForaging.from_config({"levels": [1, 2]})) is UpstreamLevelForaging
    for implementation in IMPLEMENTATIONS:
        env = make({"levels": [2, 1, 2]}, implementation)
        assert env.levels == [2, 1, 2] and env.metadata["name"] == "lbf_persistent_v0"


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_levels_persist_across_resets_and_show_in_own_observation(implementation):
    env = make({"levels": LEVELS}, implementation)
    positions = set()
    for seed in range(20):
        obs, _ = env.reset(seed=seed)
        assert [own_level(obs[a]) for a in env.agents] == LEVELS
        if implementation == "upstream":
            assert [p.level for p in env._env.players] == LEVELS
        positions.add(tuple(obs["agent_0"][12:14]))
    assert len(positions) > 5  # positions are still random per reset


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_levels_drawn_once_from_seed(implementation):
    a = make({"players": 6, "level_seed": 7, "max_player_level": 3}, implementation)
    b = make({"players": 6, "level_seed": 7, "max_player_level": 3}, implementation)
    assert a.levels == b.levels and all(1 <= lv <= 3 for lv in a.levels)
    for seed in (0, 1):
        obs, _ = a.reset(seed=seed)
        assert [own_level(obs[ag]) for ag in a.agents] == a.levels


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_true_types_follow_levels(implementation):
    env = make({"levels": [3, 1, 3, 2]}, implementation)
    assert env.true_agent_types == {"agent_0": 2, "agent_1": 0, "agent_2": 2, "agent_3": 1}


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_time_limit_is_truncation_not_termination(implementation):
    env = make({"levels": [1, 1], "grid_size": 8, "foods": 1, "max_steps": 5, "force_coop": True}, implementation)
    env.reset(seed=0)
    for t in range(5):
        _, _, term, trunc, _ = env.step({a: 0 for a in env.agents})
    assert all(trunc.values()) and not any(term.values())
    assert env.agents == []


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_eating_all_food_is_termination(implementation):
    env = make({"levels": [3, 3], "grid_size": 5, "foods": 1, "max_food_level": 1, "max_steps": 500}, implementation)
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


@pytest.mark.parametrize("implementation", IMPLEMENTATIONS)
def test_same_seed_same_trajectory(implementation):
    def rollout(seed):
        env = make({}, implementation)
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
        ({"implementation": "cuda"}, "implementation"),
        ({"levels": "1,2"}, "levels"),
        ({"players": 3, "min_player_level": 3, "max_player_level": 2}, "max_player_level"),
    ],
)
def test_bad_config_names_the_key(config, key):
    with pytest.raises(EnvConfigError, match=key):
        make_parallel_env("lbf", config)
