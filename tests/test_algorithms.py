"""AdaPS and SePS are not PPO-only: APPO (target networks) and IMPALA train with them too."""

import numpy as np
import pytest
import ray
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.impala import IMPALAConfig

import rllib_adaps
from engine_views import QUICK_FIT, learner_views, runner_views
from rllib_adaps.rllib.callback import RESULT_KEY


# APPO on the fast path, IMPALA on RLlib's multi-agent path (both paths stay covered).
@pytest.mark.parametrize("algo_config, method, fast_path", [(APPOConfig, "seps", None), (IMPALAConfig, "adaps", False)])
def test_async_algorithms_pretrain_and_keep_training(ray_local, algo_config, method, fast_path):
    config = (
        algo_config()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2, rollout_fragment_length=25)
        .training(train_batch_size_per_learner=200)
        .reporting(min_time_s_per_iteration=0, min_sample_timesteps_per_iteration=300)
    )
    algo = rllib_adaps.configure_sharing(config, method, fast_path=fast_path, identity_env_steps=300, num_clusters=3, **QUICK_FIT).build_algo()
    assert algo.config.is_multi_agent == (fast_path is False)
    try:
        results = [algo.train() for _ in range(3)]  # fitted at the start of the first
        assert results[-1][RESULT_KEY]["done"]
        learner = learner_views(algo)[0]
        assert learner["module_ids"] == [learner["module_id"]] and learner["agent_cluster"].min() >= 0
        for runner in runner_views(algo):  # async sampling: tables always equal, weights may lag a sync
            for table in ("agent_slice", "agent_mask", "agent_cluster", "mask_table"):
                np.testing.assert_array_equal(runner[table], learner[table])
        assert np.isfinite(results[-1]["learners"][learner["module_id"]]["total_loss"])
    finally:
        server = getattr(algo, "_env_runner_state_server", None)
        algo.stop()
        if server is not None:  # RLlib 2.60's stop() leaves APPO/IMPALA's state-server actor running
            ray.kill(server)
