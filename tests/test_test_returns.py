"""Test returns (``with_test_returns``): whole episodes on the evaluation EnvRunners, greedy and
sampled, at the start, every fixed number of env steps and at the budget's end, with the
trained module's masks installed there."""

import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, runner_views


@pytest.mark.parametrize("fast_path", [None, False])
def test_test_returns_come_at_the_start_every_n_env_steps_and_at_the_end(ray_local, fast_path):
    config = (PPOConfig().environment("bps", env_config={"agents_per_type": [2, 2], "max_steps": 20})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
              .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1))
    config = rllib_adaps.configure_sharing(config, "adaps", identity_env_steps=200, num_clusters=2, fast_path=fast_path, **QUICK_FIT)
    # 400 env steps after the first iteration (200 collected for the fit + 200), then 200 each
    config = rllib_adaps.with_test_returns(config, every_env_steps=400, end_env_steps=1000, episodes=3, num_env_runners=1)
    algo = config.build_algo()
    try:
        tests = [algo.train().get("evaluation", {}).get("test_returns") for _ in range(4)]
        tested = [t for t in tests if t is not None and np.isfinite(t["env_steps"])]
        # first iteration, 800 (crossing 2 x 400) and the end (1000, not a multiple of 400);
        # RLlib repeats the last test in the results in between
        assert sorted({t["env_steps"] for t in tested}) == [400, 800, 1000]
        assert tests[-1]["env_steps"] == 1000
        for test in tested:
            assert test["episodes"] == 3
            # 4 agents x 20 steps of -0.5 x distance: a finite, negative sum over agents
            assert np.isfinite(test["greedy_return_mean"]) and test["greedy_return_mean"] < 0
            assert np.isfinite(test["sampled_return_mean"]) and test["sampled_return_mean"] < 0
        learner = learner_views(algo)[0]
        for view in runner_views(algo, evaluation=True):  # the clusters' masks reached the test EnvRunner
            assert_same_module(learner, view)
    finally:
        algo.stop()


def test_bad_settings_are_refused():
    with pytest.raises(ValueError, match="episodes must be >= 1"):
        rllib_adaps.TestReturns(episodes=0, every_env_steps=10)
    with pytest.raises(ValueError, match="Unknown test-return mode"):
        rllib_adaps.TestReturns(modes=("best",), every_env_steps=10)
    with pytest.raises(ValueError, match="every_env_steps must be >= 1"):
        rllib_adaps.with_test_returns(PPOConfig(), every_env_steps=0)
