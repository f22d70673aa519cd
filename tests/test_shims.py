"""The speed workarounds of ``rllib_adaps.rllib.shims`` (notes 8, 9, 10) change speed, never results."""

import copy
import logging

import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID
from rllib_adaps.rllib.shims import denormals_are_flushed, denormals_flushed


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


def test_steps_with_denormal_moments_give_rllibs_weights_and_restore_the_cpu_setting(ray_local):
    """Note 10: Adam's moments half denormal (a slice without gradients for hundreds of steps),
    a gradient zero on a third of the elements. The one-pass step flushes denormals to zero and gives
    bit for bit RLlib's weights; a moment differs only where RLlib's is denormal (ours: 0)."""
    tiny = np.finfo(np.float32).tiny
    algo = nops_algo()
    try:
        algo.train()
        learner = algo.learner_group._learner
        optimizer = next(iter(learner._named_optimizers.values()))
        generator = torch.Generator().manual_seed(0)
        grads = {}
        for pid, p in learner._params.items():
            state = optimizer.state[p]
            moment = state["exp_avg"].view(-1)  # every 2nd element denormal, every 3rd gradient zero
            moment[::2] = tiny / 8 * torch.sign(torch.randn(moment[::2].shape, generator=generator))
            grad = 1e-3 * torch.randn(p.shape, generator=generator)
            grad.view(-1)[::3] = 0.0
            grads[pid] = grad
        params = {pid: p.detach().clone() for pid, p in learner._params.items()}
        optimizer_state = copy.deepcopy(optimizer.state_dict())

        def step(apply) -> tuple:
            with torch.no_grad():
                for pid, p in learner._params.items():
                    p.copy_(params[pid])
            optimizer.load_state_dict(copy.deepcopy(optimizer_state))
            apply({pid: g.clone() for pid, g in grads.items()})
            moments = [optimizer.state[p]["exp_avg"].clone() for p in learner._params.values()]
            return {pid: p.detach().clone() for pid, p in learner._params.items()}, moments

        assert not denormals_are_flushed()
        ours, our_moments = step(learner.apply_gradients)
        assert not denormals_are_flushed()  # restored
        rllibs, rllib_moments = step(lambda g: type(learner).apply_gradients(learner, g))
        for pid in ours:
            torch.testing.assert_close(ours[pid], rllibs[pid], rtol=0, atol=0)
        denormal_seen = False
        for our, rllib in zip(our_moments, rllib_moments):
            denormal = (rllib != 0) & (rllib.abs() < tiny)
            denormal_seen |= bool(denormal.any())
            assert torch.equal(our[~denormal], rllib[~denormal]) and (our[denormal] == 0).all()
        assert denormal_seen  # the case under test happened
        with denormals_flushed():  # a thread that flushes already keeps flushing
            assert denormals_are_flushed()
            step(learner.apply_gradients)
            assert denormals_are_flushed()
        assert not denormals_are_flushed()
    finally:
        algo.stop()


def test_denormals_flushed_on_every_torch_thread_inside_the_block_only():
    """``torch.set_flush_denormal`` sets the calling thread only; the block sets all of torch's
    threads, so an op that torch splits over its threads flushes every element."""
    threads = torch.get_num_threads()  # the suite runs with OMP_NUM_THREADS=1 (conftest)
    torch.set_num_threads(2)
    try:
        denormals = torch.full((1 << 22,), float(np.finfo(np.float32).tiny) / 4)
        assert (denormals * 1.0 != 0).all()
        with denormals_flushed():
            assert (denormals * 1.0 == 0).all()
        assert (denormals * 1.0 != 0).all() and not denormals_are_flushed()
    finally:
        torch.set_num_threads(threads)


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
