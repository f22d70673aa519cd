"""Optional shared training before the fit, and re-clustering: both methods fit again later and stay consistent everywhere."""

import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, runner_views
from rllib_adaps.rllib.callback import RESULT_KEY


def config():
    return (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
    )


# AdaPS on the fast path, SePS on RLlib's multi-agent path (both paths stay covered).
@pytest.mark.parametrize("method, fast_path", [("adaps", None), ("seps", False)])
def test_shared_training_first_then_periodic_reclustering(ray_local, method, fast_path):
    options = dict(shared_training_env_steps=600, identity_env_steps=300, num_clusters=3, recluster_every_env_steps=600, **QUICK_FIT)
    algo = rllib_adaps.configure_sharing(config(), method, fast_path=fast_path, **options).build_algo()
    assert algo.config.is_multi_agent == (fast_path is False)
    try:
        summaries = [algo.train()[RESULT_KEY] for _ in range(3)]  # 300 env steps per iteration
        assert [s["done"] for s in summaries] == [False, True, True]
        fits = sorted({s["env_steps_at_fit"] for s in summaries[1:]})
        # First fit once shared training (600 env steps) is over, then every >= 600 steps
        # (the 300 env steps sampled for the VAE count as sampled steps too: 600 + 300 + 300).
        assert fits == [600, 1200]
        learner = learner_views(algo)[0]
        labels = summaries[-1]["labels"]
        assert learner["module_ids"] == [learner["module_id"]] and learner["agent_cluster"].tolist() == labels
        if method == "seps":
            assert learner["agent_slice"].tolist() == labels
        else:
            assert learner["agent_mask"].tolist() == [k + 1 for k in labels]
        for runner in runner_views(algo):
            assert runner["mapping"] == [learner["module_id"]] * 6
            assert_same_module(learner, runner)
        assert np.isfinite(algo.train()["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
