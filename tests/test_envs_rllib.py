"""Every env runs one real RLlib PPO iteration with one shared module, in env agent order."""

import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.env.wrappers.pettingzoo_env import ParallelPettingZooEnv

import rllib_adaps
from rllib_adaps.rllib.module_ids import sharing_module_id
from rllib_adaps.rllib.shims import foreach_learner
from rllib_adaps.envs import EnvConfigError, env_creator, make_parallel_env

ENVS = [
    ("lbf", {"levels": [1, 1, 2, 2], "grid_size": 6, "foods": 2}),
    ("crware", {"task": "tiny-4ag", "max_steps": 50}),
    ("bps", {"preset": "v1"}),
    ("bps", {"preset": "v6", "max_steps": 20}),
]


@pytest.mark.parametrize("name, env_config", ENVS)
def test_one_ppo_iteration_with_one_shared_module(ray_local, name, env_config):
    config = (
        PPOConfig()
        .environment(name, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
    )
    algo = rllib_adaps.configure_sharing(config, "fups").build_algo()
    try:
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] >= 200
        mid = sharing_module_id(algo)  # every one of these envs takes the fast path
        assert np.isfinite(result["learners"][mid]["total_loss"])
        assert foreach_learner(algo, lambda learner: sorted(learner.module.keys())) == [[mid]]
    finally:
        algo.stop()


@pytest.mark.parametrize("name, env_config", ENVS)
def test_wrapper_keeps_env_agent_order(name, env_config):
    env = env_creator(name)(env_config)
    expected = [f"agent_{i}" for i in range(len(env.possible_agents))]
    assert env.possible_agents == expected
    obs, _ = env.reset(seed=0)
    assert list(obs) == expected
    assert env.true_agent_types is not None and set(env.true_agent_types) == set(expected)


def test_rllib_own_wrapper_would_lose_the_order():
    """Why the package has its own wrapper: RLlib's builds agent lists from a set."""
    orders = {tuple(ParallelPettingZooEnv(make_parallel_env("bps", {"preset": "v2"})).possible_agents) for _ in range(3)}
    ours = tuple(f"agent_{i}" for i in range(30))
    assert any(order != ours for order in orders)


def test_unknown_env_name_is_a_clear_error():
    with pytest.raises(EnvConfigError, match="Known envs"):
        make_parallel_env("lbf2", {})
