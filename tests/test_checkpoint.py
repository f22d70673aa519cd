"""Checkpoints carry the result of identity pre-training; a restored run does not redo it."""

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
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
    bigger = config().environment("bps", env_config={"agents_per_type": [3, 3, 3], "max_steps": 25})
    more_agents = rllib_adaps.configure_sharing(bigger, "adaps", num_clusters=3).build_algo()
    try:
        with pytest.raises(Exception, match="masks for 6 agents, but this module serves 9"):
            more_agents.restore_from_path(checkpoint)
    finally:
        more_agents.stop()
