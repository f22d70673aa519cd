"""The speed workarounds of ``rllib_adaps.rllib.shims`` (notes 8, 9) change speed, never results."""

import logging

import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID


def nops_algo():
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 1], "max_steps": 10})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=40, minibatch_size=20, num_epochs=2)
        .debugging(seed=5)
    )
    return rllib_adaps.configure_sharing(config, "nops", fast_path=True).build_algo()


def trained_state(check_once: bool) -> dict:
    algo = nops_algo()  # built and trained one after the other: they share torch's global generator
    try:
        learner = algo.learner_group._learner
        assert "apply_gradients" in vars(learner)  # installed on the instance
        if not check_once:
            del learner.apply_gradients  # back to TorchLearner's method
        for _ in range(2):
            algo.train()
        return {k: v.detach().clone() for k, v in learner.module[FAST_PATH_MODULE_ID].state_dict().items()}
    finally:
        algo.stop()


def test_checking_gradients_once_trains_exactly_as_rllibs_apply_gradients(ray_local):
    ours, rllibs = trained_state(check_once=True), trained_state(check_once=False)
    assert ours.keys() == rllibs.keys()
    for key in ours:
        torch.testing.assert_close(ours[key], rllibs[key], rtol=0, atol=0, msg=key)


def test_nan_gradients_still_take_rllibs_path(ray_local, caplog):
    """RLlib zeroes nan/inf gradients with a warning and steps; so does the shim's fallback."""
    algo = nops_algo()
    try:
        learner = algo.learner_group._learner
        grads = {pid: torch.ones_like(p) for pid, p in learner._params.items()}
        poisoned = next(iter(grads))
        grads[poisoned][(0,) * grads[poisoned].dim()] = float("nan")
        before = {pid: p.detach().clone() for pid, p in learner._params.items()}
        with caplog.at_level(logging.WARNING, logger="ray.rllib"):
            learner.apply_gradients(grads)
        assert "contain `nan/inf` values" in caplog.text
        assert torch.isfinite(learner._params[poisoned].grad).all()
        for pid, p in learner._params.items():
            assert torch.isfinite(p).all()
            assert not torch.equal(p.detach(), before[pid])  # the optimizer stepped
    finally:
        algo.stop()


def test_not_installed_where_rllibs_method_does_more(ray_local):
    config = (
        PPOConfig().environment("bps", env_config={"agents_per_type": [2, 1], "max_steps": 10})
        .env_runners(num_env_runners=0).framework(torch_skip_nan_gradients=True).debugging(seed=5)
    )
    algo = rllib_adaps.configure_sharing(config, "fups", fast_path=True).build_algo()
    try:
        assert "apply_gradients" not in vars(algo.learner_group._learner)
    finally:
        algo.stop()


def test_episodes_logged_in_columns_reduce_as_rllibs_per_episode_log_dicts():
    """The fast path logs ended env episodes a key at a time (shims note 9); the reduced
    metrics equal RLlib's ``MultiAgentEnvRunner`` way, one ``log_dict`` per episode."""
    from types import SimpleNamespace

    from ray.rllib.utils import metrics as m
    from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

    from rllib_adaps.rllib.fast_path import FastPathEnvRunner

    rng = np.random.default_rng(0)
    episodes = [{"length": int(rng.integers(5, 9)), "seconds": float(rng.random()),
                 "agents": {f"agent_{i}": float(rng.normal()) for i in range(3)}} for _ in range(5)]
    window = 3  # fewer than the episodes: the window must keep the last ones
    rllibs = MetricsLogger()
    for e in episodes:
        ret = float(sum(e["agents"].values()))
        steps = dict.fromkeys(e["agents"], e["length"])
        rllibs.log_dict({m.EPISODE_LEN_MEAN: e["length"], m.EPISODE_RETURN_MEAN: ret, m.EPISODE_DURATION_SEC_MEAN: e["seconds"],
                         m.EPISODE_AGENT_RETURN_MEAN: e["agents"], m.EPISODE_AGENT_STEPS: steps,
                         m.EPISODE_MODULE_RETURN_MEAN: {FAST_PATH_MODULE_ID: ret}}, window=window)
        rllibs.log_dict({m.EPISODE_LEN_MIN: e["length"], m.EPISODE_RETURN_MIN: ret}, reduce="min", window=window)
        rllibs.log_dict({m.EPISODE_LEN_MAX: e["length"], m.EPISODE_RETURN_MAX: ret}, reduce="max", window=window)
    runner = SimpleNamespace(metrics=MetricsLogger(),
                             config=SimpleNamespace(metrics_num_episodes_for_smoothing=window, num_env_runners=0))
    for part in (episodes[:2], episodes[2:]):  # two calls, as two rollout steps would make
        FastPathEnvRunner._log_env_episodes(
            runner, lengths=[e["length"] for e in part], returns=[float(sum(e["agents"].values())) for e in part],
            seconds=[e["seconds"] for e in part],
            agent_returns={a: [e["agents"][a] for e in part] for a in part[0]["agents"]},
            agent_steps={a: [e["length"] for e in part] for a in part[0]["agents"]})
    assert runner.metrics.reduce() == rllibs.reduce()
