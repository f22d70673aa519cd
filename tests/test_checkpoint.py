"""Checkpoints carry the result of identity pre-training; a restored run does not redo it."""

import functools
import pathlib
import sys

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns

import rllib_adaps
from rllib_adaps.callback import RESULT_KEY, foreach_learner


def config():
    return (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
        .debugging(seed=0)
    )


def learner_tables(algo):
    return foreach_learner(algo, lambda l: {
        mid: (l.module[mid].unwrapped().actor_masks.numpy().copy(), l.module[mid].unwrapped().agent_groups.numpy().copy())
        for mid in sorted(l.module.keys())
    })[0]


@pytest.mark.parametrize("method", ["adaps", "seps"])
def test_restore_keeps_clusters_and_does_not_pretrain_again(ray_local, tmp_path, method):
    algo = rllib_adaps.configure_sharing(config(), method, pretrain_env_steps=300, identity_env_steps=300, num_clusters=3).build_algo()
    try:
        first = algo.train()[RESULT_KEY]
        assert first["done"] and not first.get("restored")
        before = learner_tables(algo)
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))
        module_id = "shared" if method == "adaps" else "group_0"
        obs = torch.cat([torch.randn(6, 10), torch.arange(6, dtype=torch.float32)[:, None]], dim=1)
        expected = algo.get_module(module_id).forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    finally:
        algo.stop()

    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        after = learner_tables(restored)
        assert sorted(after) == sorted(before)
        for mid in before:
            np.testing.assert_array_equal(after[mid][0], before[mid][0])
            np.testing.assert_array_equal(after[mid][1], before[mid][1])
        logits = restored.get_module(module_id).forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(logits, expected)
        summary = restored.train()[RESULT_KEY]
        assert summary["done"] and summary.get("restored")  # adopted, not fitted again
        assert summary["labels"] == first["labels"]
        np.testing.assert_array_equal(learner_tables(restored)[mid][1], before[mid][1])
    finally:
        restored.stop()

    # restore_from_path into an Algorithm built from the original config (what Tune does):
    # SePS's group modules do not exist there yet and must be built before their weights load.
    fresh = rllib_adaps.configure_sharing(config(), method, pretrain_env_steps=300, identity_env_steps=300, num_clusters=3).build_algo()
    try:
        fresh.restore_from_path(checkpoint)
        after = learner_tables(fresh)
        assert sorted(after) == sorted(before)
        for mid in before:
            np.testing.assert_array_equal(after[mid][0], before[mid][0])
            np.testing.assert_array_equal(after[mid][1], before[mid][1])
        torch.testing.assert_close(fresh.get_module(module_id).forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS], expected)
        summary = fresh.train()[RESULT_KEY]
        assert summary["done"] and summary.get("restored") and summary["labels"] == first["labels"]
    finally:
        fresh.stop()


def test_checkpoint_of_another_method_or_agent_count_is_refused(ray_local, tmp_path):
    algo = rllib_adaps.configure_sharing(config(), "adaps", pretrain_env_steps=300, identity_env_steps=300, num_clusters=3).build_algo()
    try:
        algo.train()
        checkpoint = algo.save_to_path(str(tmp_path / "adaps"))
    finally:
        algo.stop()
    other_method = rllib_adaps.configure_sharing(config(), "fups").build_algo()
    try:
        with pytest.raises(Exception, match="written by a 'adaps' run, but this run uses 'fups'"):
            other_method.restore_from_path(checkpoint)
    finally:
        other_method.stop()
    no_sharing = rllib_adaps.configure_sharing(config(), "nops").build_algo()
    try:
        with pytest.raises(Exception, match=r"holds RLModules \['shared'\], but this run has \['agent_0'"):
            no_sharing.restore_from_path(checkpoint)
    finally:
        no_sharing.stop()
    bigger = config().environment("bps", env_config={"agents_per_type": [3, 3, 3], "max_steps": 25})
    more_agents = rllib_adaps.configure_sharing(bigger, "adaps", num_clusters=3).build_algo()
    try:
        with pytest.raises(Exception, match="masks for 6 agents, but this module serves 9"):
            more_agents.restore_from_path(checkpoint)
    finally:
        more_agents.stop()


class FailOnce(RLlibCallback):
    """Fails the trial once, at iteration 3 (after the checkpoint of iteration 2)."""

    def __init__(self, marker: str):
        super().__init__()
        self.marker = pathlib.Path(marker)

    def on_train_result(self, *, algorithm, result, **kwargs):
        if result["training_iteration"] == 3 and not self.marker.exists():
            self.marker.touch()
            raise RuntimeError("injected failure")


@pytest.mark.parametrize("method", ["adaps", "seps"])
def test_tune_restore_resumes_without_pretraining_again(ray_local, tmp_path, method):
    """Tuner.restore after a trial error: the trial resumes from its last checkpoint with the
    same clusters (SePS: the same group modules) and does not pre-train again."""
    import ray.cloudpickle
    from ray import tune

    # Tune's trial actors cannot import this test module: ship FailOnce by value.
    ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    base = config().callbacks(functools.partial(FailOnce, marker=str(tmp_path / "failed")))
    cfg = rllib_adaps.configure_sharing(base, method, pretrain_env_steps=300, identity_env_steps=300, num_clusters=3)
    run_config = tune.RunConfig(
        name="restore", storage_path=str(tmp_path), stop={"training_iteration": 5}, verbose=0,
        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=1),
    )
    first = tune.Tuner("PPO", param_space=cfg, run_config=run_config).fit()[0]
    assert first.error is not None and "injected failure" in str(first.error)
    before = first.metrics[RESULT_KEY]
    assert first.metrics["training_iteration"] == 2 and before["done"] and not before.get("restored")

    second = tune.Tuner.restore(str(tmp_path / "restore"), trainable="PPO", resume_errored=True).fit()[0]
    assert second.error is None
    after = second.metrics[RESULT_KEY]
    assert second.metrics["training_iteration"] == 5
    assert after["done"] and after.get("restored") and after["labels"] == before["labels"]
    from rllib_adaps.multi_module import checkpoint_module_ids

    modules = checkpoint_module_ids(pathlib.Path(second.checkpoint.path) / "learner_group" / "learner" / "rl_module")
    assert modules == (["shared"] if method == "adaps" else ["group_0", "group_1", "group_2"])
