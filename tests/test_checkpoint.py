"""Checkpoints carry the result of identity pre-training; a restored run does not redo it."""

import functools
import pathlib
import shutil

import pytest
import torch
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, module_id, runner_views
from rllib_adaps.rllib.callback import RESULT_KEY
from rllib_adaps.rllib.checkpoints import CheckpointMismatchError, checkpoint_module_ids


def config(evaluation=False, num_env_runners=1):
    cfg = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
        .debugging(seed=0)
    )
    if evaluation:
        cfg.evaluation(evaluation_num_env_runners=1, evaluation_interval=1, evaluation_duration=1)
    return cfg


def assert_every_runner_holds(algo, learner):
    """Every remote and evaluation EnvRunner holds exactly the Learner's module (tables and weights)."""
    runners = runner_views(algo) + (runner_views(algo, evaluation=True) if algo.eval_env_runner_group else [])
    assert len(runners) == (2 if algo.eval_env_runner_group else 1)  # the local one where no remote samples
    for runner in runners:
        assert_same_module(learner, runner)


def test_restore_keeps_clusters_everywhere_and_does_not_pretrain_again(ray_local, tmp_path, method="adaps"):
    """Restoring is the same for every method (one module; its tables are module state):
    AdaPS here, SePS through Tune's restore in test_cli. The checkpoint's run samples on its local
    EnvRunner and evaluates on a remote one (``from_checkpoint`` rebuilds that); the fresh
    Algorithm restored into has a remote EnvRunner of each kind."""
    options = dict(identity_env_steps=300, num_clusters=3, **QUICK_FIT)  # fitted at the start of the first train()
    algo = rllib_adaps.configure_sharing(config(evaluation=True, num_env_runners=0), method, **options).build_algo()
    try:
        first = algo.train()[RESULT_KEY]
        assert first["done"] and not first.get("restored")
        before = learner_views(algo)[0]
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))
        obs = torch.cat([torch.randn(6, 10), torch.arange(6, dtype=torch.float32)[:, None]], dim=1)
        expected = algo.get_module(module_id(algo)).forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    finally:
        algo.stop()

    # 1. Algorithm.from_checkpoint; 2. restore_from_path into an Algorithm built from the
    # original config (what Tune does). Checked right after the restore, before any sampling.
    def from_checkpoint():
        return Algorithm.from_checkpoint(checkpoint)

    def restore_into_fresh():
        fresh = rllib_adaps.configure_sharing(config(evaluation=True), method, **options).build_algo()
        fresh.restore_from_path(checkpoint)
        return fresh

    for restore in (from_checkpoint, restore_into_fresh):
        algo = restore()
        try:
            after = learner_views(algo)[0]
            assert_same_module(before, after)
            assert_every_runner_holds(algo, after)
            logits = algo.get_module(module_id(algo)).forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
            torch.testing.assert_close(logits, expected)
            summary = algo.train()[RESULT_KEY]
            assert summary["done"] and summary.get("restored")  # adopted, not fitted again
            assert summary["labels"] == first["labels"]
            assert learner_views(algo)[0]["agent_cluster"].tolist() == first["labels"]
        finally:
            algo.stop()


def test_checkpoints_of_another_method_agent_count_or_release_are_refused(ray_local, tmp_path):
    local = functools.partial(config, num_env_runners=0)  # refusals happen on the Learner: no EnvRunner actor needed
    algo = rllib_adaps.configure_sharing(local(), "adaps", num_clusters=3).build_algo()
    try:
        checkpoint = pathlib.Path(algo.save_to_path(str(tmp_path / "adaps")))
    finally:
        algo.stop()
    # A checkpoint with the module layout of releases before the one engine (NoPS: one module per agent).
    old = tmp_path / "old"
    shutil.copytree(checkpoint, old)
    modules = old / "learner_group" / "learner" / "rl_module"
    own = checkpoint_module_ids(modules)
    assert own == [module_id(rllib_adaps.configure_sharing(config(), "adaps", num_clusters=3))]
    (modules / own[0]).rename(modules / "agent_0")

    other_method = rllib_adaps.configure_sharing(local(), "fups").build_algo()
    try:
        with pytest.raises(Exception, match="written by a 'adaps' run, but this run uses 'fups'"):
            other_method.restore_from_path(str(checkpoint))
        with pytest.raises(CheckpointMismatchError, match=rf"holds RLModules \['agent_0'\], but this run has \['{own[0]}'\].*before the one-engine"):
            other_method.restore_from_path(str(old))
    finally:
        other_method.stop()
    # Written on the fast path (bps takes it), restored into a run on the multi-agent path.
    other_path = rllib_adaps.configure_sharing(local(), "adaps", num_clusters=3, fast_path=False).build_algo()
    try:
        with pytest.raises(CheckpointMismatchError, match="written by a run on the fast path.*fast_path=True"):
            other_path.restore_from_path(str(checkpoint))
    finally:
        other_path.stop()
    bigger = local().environment("bps", env_config={"agents_per_type": [3, 3, 3], "max_steps": 25})
    more_agents = rllib_adaps.configure_sharing(bigger, "adaps", num_clusters=3, **QUICK_FIT).build_algo()
    try:
        with pytest.raises(Exception, match="tables for 6 agents, but this module serves 9"):
            more_agents.restore_from_path(str(checkpoint))
    finally:
        more_agents.stop()


# Tune's restore after a trial error (same clusters, no second fit, EnvRunners hold the
# Learner's module right after it): tests/test_cli.py::test_resume_continues_a_failed_trial_from_its_checkpoint.
