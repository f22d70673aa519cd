"""Role Particles: the identity-recovery test env (roles differ in observation size, actions,
reward and dynamics; the leader role is held by one agent)."""

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from rllib_adaps.envs import EnvConfigError, OrderedParallelEnv, make_parallel_env
from rllib_adaps.envs.roles import ROLE_PUSH, TIMESTEP, RoleParticles


def random_actions(env, rng):
    return {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}


def test_registered_and_pettingzoo_parallel_api():
    env = make_parallel_env("roles", {})
    assert isinstance(env, RoleParticles)
    parallel_api_test(env, num_cycles=60)


def test_rllib_multiagent_env_check():
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    check_multiagent_environments(OrderedParallelEnv(RoleParticles()))


def test_roles_spaces_and_types():
    env = RoleParticles(agents_per_role=(1, 4, 3))
    assert env.possible_agents == [f"agent_{i}" for i in range(8)]
    assert list(env.true_agent_types.values()) == [0, 1, 1, 1, 1, 2, 2, 2]
    assert [env.observation_space(a).shape[0] for a in env.possible_agents] == [10] * 5 + [8] * 3
    assert [env.action_space(a).n for a in env.possible_agents] == [5] * 5 + [4] * 3
    obs, _ = env.reset(seed=0)
    assert all(obs[a].shape == env.observation_space(a).shape and obs[a].dtype == np.float32 for a in obs)


def test_rewards_and_dynamics_follow_the_role():
    env = RoleParticles(agents_per_role=(1, 1, 1), reward_scale=0.5)
    env.reset(seed=3)
    before = env.positions.copy()
    # +x for everyone: leader/follower action 2, scout action 1 (scouts have no no-op)
    _, rewards, _, _, _ = env.step({"agent_0": 2, "agent_1": 2, "agent_2": 1})
    moved = env.positions - before
    np.testing.assert_allclose(moved[:, 0], ROLE_PUSH * TIMESTEP * TIMESTEP)
    np.testing.assert_allclose(moved[:, 1], 0.0)
    leader = env.positions[0]
    expected = -0.5 * np.array([
        np.linalg.norm(env.landmarks[0] - leader),
        np.linalg.norm(leader - env.positions[1]),
        np.linalg.norm(env.landmarks[1] - env.positions[2]),
    ])
    np.testing.assert_allclose([rewards[a] for a in env.possible_agents], expected, rtol=1e-6)


def test_observation_layout():
    env = RoleParticles(agents_per_role=(1, 2, 1))
    obs, _ = env.reset(seed=1)
    p, lm = env.positions, env.landmarks
    np.testing.assert_allclose(obs["agent_1"][2:4], p[1], rtol=1e-6)
    np.testing.assert_allclose(obs["agent_1"][4:8], (lm - p[1]).ravel(), rtol=1e-5)
    np.testing.assert_allclose(obs["agent_1"][8:10], p[0] - p[1], rtol=1e-5)  # follower sees the leader
    np.testing.assert_allclose(obs["agent_0"][8:10], p.mean(axis=0) - p[0], rtol=1e-5, atol=1e-6)  # leader: team centroid
    assert obs["agent_3"].shape == (8,)


def test_truncation_and_seeding():
    env = RoleParticles(max_steps=3)
    rng = np.random.default_rng(0)
    first = env.reset(seed=5)[0]
    for step in range(3):
        _, _, terminated, truncated, _ = env.step(random_actions(env, rng))
        assert not any(terminated.values())
        assert all(truncated.values()) == (step == 2)
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    again = env.reset(seed=5)[0]
    assert all(np.array_equal(first[a], again[a]) for a in first)


@pytest.mark.parametrize(
    "config, named",
    [({"agents_per_role": (0, 2, 2)}, "leader"), ({"agents_per_role": (1, 2)}, "agents_per_role"),
     ({"max_step": 5}, "max_steps"), ({"reward_scale": 0}, "reward_scale")],
)
def test_bad_config_is_named(config, named):
    with pytest.raises(EnvConfigError, match=named):
        RoleParticles.from_config(config)


def test_bad_actions_are_rejected():
    env = RoleParticles()
    env.reset(seed=0)
    actions = {a: 0 for a in env.agents}
    actions["agent_7"] = 4  # scouts have 4 actions
    with pytest.raises(ValueError, match="out of range"):
        env.step(actions)
    with pytest.raises(ValueError, match="no action"):
        env.step({"agent_0": 0})
