"""AdaPS and SePS are not PPO-only: APPO (target networks) and IMPALA train with them too."""

import numpy as np
import pytest
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.impala import IMPALAConfig

import rllib_adaps
from rllib_adaps.callback import RESULT_KEY, foreach_learner


@pytest.mark.parametrize("algo_config, method", [(APPOConfig, "adaps"), (APPOConfig, "seps"), (IMPALAConfig, "adaps")])
def test_async_algorithms_pretrain_and_keep_training(ray_local, algo_config, method):
    config = (
        algo_config()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2, rollout_fragment_length=25)
        .training(train_batch_size_per_learner=200)
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=300)
    )
    algo = rllib_adaps.configure_sharing(config, method, pretrain_env_steps=300, identity_env_steps=300, num_clusters=3).build_algo()
    try:
        results = [algo.train() for _ in range(4)]
        assert results[-1][RESULT_KEY]["done"]
        modules = foreach_learner(algo, lambda l: sorted(l.module.keys()))[0]
        assert modules == (["shared"] if method == "adaps" else ["group_0", "group_1", "group_2"])
        if method == "adaps":
            groups = foreach_learner(algo, lambda l: l.module["shared"].unwrapped().agent_groups.tolist())[0]
            runner_groups = algo.env_runner_group.foreach_env_runner(lambda er: er.module["shared"].agent_groups.tolist(), local_env_runner=False)
            assert all(g == groups for g in runner_groups) and min(groups) >= 0
        learner = results[-1]["learners"]
        assert any(np.isfinite(v.get("total_loss", np.nan)) for k, v in learner.items() if k != "__all_modules__")
    finally:
        algo.stop()
