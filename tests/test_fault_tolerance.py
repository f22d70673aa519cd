"""An EnvRunner killed after clustering comes back with the current tables and weights, and
never samples with a stale (unclustered) module; training goes on."""

import sys

import numpy as np
import pytest
import ray
from ray import cloudpickle
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, runner_views
from rllib_adaps.rllib.module_ids import engine_module
from rllib_adaps.rllib.callback import RESULT_KEY

cloudpickle.register_pickle_by_value(sys.modules[__name__])  # the probe runs on the EnvRunners


class StaleModuleProbe(RLlibCallback):
    """Flags (per iteration) whether any agent step was sampled by an unclustered module."""

    def on_sample_end(self, *, env_runner, metrics_logger, samples, **kwargs):
        stale = 0
        for episode in samples:
            # Multi-agent episodes hold one episode per agent; on the fast path each is one agent slot.
            for sa_episode in episode.agent_episodes.values() if hasattr(episode, "agent_episodes") else [episode]:
                module = engine_module(env_runner, sa_episode.module_id)
                if len(sa_episode) and not module.is_clustered():
                    stale = 1
        metrics_logger.log_value("stale_module_samples", stale, reduce="max", clear_on_reduce=True)


def config():
    return (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
        .fault_tolerance(restart_failed_env_runners=True)
        .callbacks(StaleModuleProbe)
    )


@pytest.mark.parametrize("method", ["seps"])  # tables are module state for every method alike
def test_killed_env_runner_gets_current_tables_and_weights(ray_local, method):
    algo = rllib_adaps.configure_sharing(config(), method, shared_training_env_steps=300, identity_env_steps=300, num_clusters=3, **QUICK_FIT).build_algo()
    try:
        results = [algo.train() for _ in range(2)]  # clustered after iteration 1
        labels = results[-1][RESULT_KEY]["labels"]
        victim_id = algo.env_runner_group.healthy_env_runner_ids()[0]
        victim = algo.env_runner_group._worker_manager._actors[victim_id]
        old_pid = ray.get(victim.apply.remote(lambda er: __import__("os").getpid()))
        ray.kill(victim, no_restart=False)

        after = [algo.train()]
        while algo.env_runner_group.num_healthy_remote_workers() < 2 and len(after) < 10:
            after.append(algo.train())  # training goes on while Ray restarts the killed actor
        after.append(algo.train())  # at least one iteration with the recreated EnvRunner
        pids = algo.env_runner_group.foreach_env_runner(lambda er: __import__("os").getpid(), local_env_runner=False)
        assert old_pid not in pids and len(pids) == 2, "the killed EnvRunner was recreated"
        assert sum(r["env_runners"].get("num_env_runner_restarts", 0) for r in after) >= 1 or algo._counters["total_num_restored_workers"] >= 1
        for r in after:
            assert r["env_runners"]["stale_module_samples"] == 0
        assert np.isfinite(after[-1]["env_runners"]["episode_return_mean"])

        learner = learner_views(algo)[0]
        assert learner["agent_cluster"].tolist() == labels
        runners = runner_views(algo)
        assert len(runners) == 2
        for runner in runners:
            assert runner["mapping"] == [runner["module_id"]] * 6
            assert_same_module(learner, runner)
    finally:
        algo.stop()


def test_env_runner_killed_before_collection_still_completes_pretraining(ray_local):
    """Pre-training completes (from the healthy EnvRunner, or after restoring) when an
    EnvRunner dies right before its transitions are collected. On RLlib's multi-agent path (the
    test above runs on the fast path): both paths stay covered."""
    algo = rllib_adaps.configure_sharing(config(), "adaps", fast_path=False, shared_training_env_steps=10**9, identity_env_steps=300,
                                         num_clusters=3, **QUICK_FIT).build_algo()
    assert algo.config.is_multi_agent
    try:
        algo.train()
        callback = next(c for c in algo.callbacks if isinstance(c, rllib_adaps.SharingCallback))
        victim = algo.env_runner_group._worker_manager._actors[algo.env_runner_group.healthy_env_runner_ids()[0]]
        ray.kill(victim, no_restart=False)
        result = callback.pretrain_and_install(algo, env_steps=300)
        assert result.num_clusters == 3 and callback.summary["done"]
        for _ in range(10):  # training goes on while Ray restarts the killed actor
            after = algo.train()
            if algo.env_runner_group.num_healthy_remote_workers() == 2:
                break
        learner = learner_views(algo)[0]
        assert learner["agent_cluster"].tolist() == result.labels.tolist()
        runners = runner_views(algo)
        assert len(runners) == 2
        for runner in runners:
            assert_same_module(learner, runner)
        assert np.isfinite(after["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
