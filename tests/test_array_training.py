"""The array training step (``rllib_adaps.rllib.array_training``): PPO's step from the fast path's arrays.

What it must keep from RLlib's PPO step, each checked here:
- the batch: the same trajectories give the same rows, value targets and raw advantages as
  RLlib's learner connector pipeline (episode ends by termination and by truncation, chunks
  cut mid-episode, several calls);
- training: through ``algo.train()``, one optimizer step per update, the EnvRunner acting with
  the Learner's parameters, budgets in env steps, episode metrics, identity pre-training;
- the choice: automatic with a log line saying which step runs and why, an option that turns
  it off, and an error when it is required where it cannot run.
Learning on paired seeds against RLlib's multi-agent path: ``tests/test_fast_path.py`` (its
fast-path runs take this step).
"""

import logging

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from torch.optim.optimizer import register_optimizer_step_post_hook

import rllib_adaps
from rllib_adaps.rllib.array_training import ArrayTrainingStep, train_batch
from rllib_adaps.rllib.fast_path import FastPathEnvRunner
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID
from rllib_adaps.rllib.shims import foreach_learner


def rows_in_order(columns) -> np.ndarray:
    """One matrix row per transition (observation, action, log-prob, value target), sorted, so
    that two batches with the same transitions in another order compare equal."""
    matrix = np.concatenate([np.asarray(c, dtype=np.float64).reshape(len(c), -1) for c in columns], axis=1)
    return matrix[np.lexsort(matrix.T[::-1])]


@pytest.mark.parametrize(("name", "env_config"), [
    ("bps", {"agents_per_type": [2, 1], "max_steps": 6}),  # truncation: the value of the final observation
    ("lbf", {"levels": [1, 2, 1], "grid_size": 4, "foods": 1, "max_steps": 9}),  # terminations: no bootstrap
])
def test_the_batch_is_rllibs_learner_connector_batch(ray_local, name, env_config):
    config = rllib_adaps.configure_sharing(
        PPOConfig().environment(name, env_config=env_config).env_runners(num_env_runners=0, num_envs_per_env_runner=3)
        .training(gamma=0.9, lambda_=0.8).debugging(seed=3), "nops", fast_path=True)
    algo = config.build_algo()
    loop = FastPathEnvRunner(config=algo.config)
    try:
        runner, learner = algo.env_runner, algo.learner_group._learner
        module = learner.module[FAST_PATH_MODULE_ID]
        loop.module.set_state(runner.module.get_state())
        ends = 0
        for call, env_steps in enumerate([7, 4, 12, 9]):
            torch.manual_seed(call)
            rollout = runner.sample_rollout(env_steps)
            torch.manual_seed(call)
            episodes = loop.sample(num_timesteps=env_steps, explore=True)
            ends += sum(e.is_done for e in episodes)
            ours = train_batch(module, rollout, gamma=0.9, lambda_=0.8)
            theirs = learner._learner_connector(rl_module=learner.module, batch={}, episodes=episodes, shared_data={},
                                                metrics=learner.metrics)[FAST_PATH_MODULE_ID]
            real = theirs[Columns.LOSS_MASK].numpy()
            keys = (Columns.OBS, Columns.ACTIONS, Columns.ACTION_LOGP, Postprocessing.VALUE_TARGETS)
            assert len(ours[Columns.OBS]) == real.sum() == rollout.env_steps * 3
            np.testing.assert_allclose(rows_in_order([ours[k].numpy() for k in keys]),
                                       rows_in_order([theirs[k].numpy()[real] for k in keys]), rtol=1e-5, atol=1e-5)
            # Advantages: the value targets less the values, standardised over the real rows.
            with torch.no_grad():
                raw = ours[Postprocessing.VALUE_TARGETS] - module.compute_values({Columns.OBS: ours[Columns.OBS]})
            torch.testing.assert_close(ours[Postprocessing.ADVANTAGES], (raw - raw.mean()) / raw.std(correction=0))
        assert ends > 0
    finally:
        loop.stop()
        algo.stop()


def a2c_config(method: str, **sharing):
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2, rollout_fragment_length=5)
        .training(train_batch_size_per_learner=10)
        .reporting(min_sample_timesteps_per_iteration=100, min_time_s_per_iteration=0)
        .debugging(seed=0)
    )
    return rllib_adaps.configure_sharing(rllib_adaps.a2c_settings(config, reference=True), method, **sharing)


def test_adaps_trains_one_optimizer_step_per_update_with_the_learners_weights(ray_local):
    """AdaPS under the A2C protocol: identity pre-training first (RLlib's episodes), then 10
    updates of 10 env steps per iteration, each one optimizer step; the EnvRunner acts with the
    Learner's parameters and masks."""
    algo = a2c_config("adaps", identity_env_steps=60, num_clusters=3, vae={"min_updates": 20, "epochs": 1}).build_algo()
    steps = []
    try:
        optimizers = {id(o) for _, o in foreach_learner(algo, lambda l: l.get_optimizers_for_module(FAST_PATH_MODULE_ID))[0]}
        handle = register_optimizer_step_post_hook(lambda opt, a, k: steps.append(1) if id(opt) in optimizers else None)
        try:
            results = [algo.train() for _ in range(2)]
        finally:
            handle.remove()
        assert isinstance(algo.training_step, ArrayTrainingStep)
        assert len(steps) == 20
        env_runners = [r["env_runners"] for r in results]
        collected = env_runners[0]["num_env_steps_sampled_lifetime"] - 100
        assert collected >= 60  # the identity collection counts as sampled env steps
        assert env_runners[1]["num_env_steps_sampled_lifetime"] == collected + 200
        assert results[1]["learners"][FAST_PATH_MODULE_ID]["num_module_steps_trained"] == 100 * 6  # real rows only
        assert env_runners[1]["episode_len_mean"] == 25
        assert set(env_runners[1]["agent_episode_returns_mean"]) == {f"agent_{i}" for i in range(6)}
        assert env_runners[1]["episode_return_mean"] == pytest.approx(sum(env_runners[1]["agent_episode_returns_mean"].values()))
        assert results[1]["identity_pretraining"]["num_clusters"] == 3
        learner = {k: v.detach() for k, v in algo.learner_group._learner.module[FAST_PATH_MODULE_ID].state_dict().items()}
        runner = algo.env_runner.module.state_dict()
        assert "actor.hidden.0.weight" in runner and len(runner) < len(learner)  # inference-only: no critic
        for key, value in runner.items():
            torch.testing.assert_close(value, learner[key], rtol=0, atol=0, msg=key)
    finally:
        algo.stop()


class StepCounter(RLlibCallback):
    def on_episode_step(self, *, episode, **kwargs):
        episode.custom_data["steps"] = episode.custom_data.get("steps", 0) + 1


@pytest.mark.parametrize("case", ["automatic", "off", "hooks", "multi_agent_path"])
def test_the_step_is_chosen_logged_and_can_be_turned_off(ray_local, caplog, case):
    sharing = {"off": {"array_training": False}, "multi_agent_path": {"array_training": True, "fast_path": False}}.get(case, {})
    config = a2c_config("fups", **sharing)
    if case == "hooks":
        config = config.callbacks(callbacks_class=[StepCounter, config.callbacks_class])
    if case == "multi_agent_path":
        with pytest.raises(ValueError, match="array_training=True.*multi-agent path"):
            config.build_algo()
        return
    with caplog.at_level(logging.INFO, logger="rllib_adaps"):
        algo = config.build_algo()
    try:
        lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("array training")]
        expected = {"automatic": "PPO's update from the fast path's arrays", "off": "off (array_training=False)",
                    "hooks": "RLlib's training step (callbacks implement ['on_episode_step']"}[case]
        assert len(lines) == 1 and expected in lines[0], lines
        assert isinstance(algo.training_step, ArrayTrainingStep) == (case == "automatic")
        result = algo.train()
        assert result["env_runners"]["num_env_steps_sampled_lifetime"] == 100
    finally:
        algo.stop()


def test_array_training_takes_none_true_or_false():
    with pytest.raises(ValueError, match="array_training must be None"):
        a2c_config("fups", array_training="yes")


def test_a_tune_trial_takes_the_array_step(ray_local, tmp_path):
    """Tune runs the Algorithm in a Ray actor, whose class wraps every method: the step is
    still recognised as PPO's. Seen in what the trial trained: exactly N rows per env step
    (RLlib's step would add a bootstrap row per agent and episode chunk)."""
    from ray import tune

    tuner = tune.Tuner(PPOConfig().algo_class, param_space=a2c_config("fups"),
                       run_config=tune.RunConfig(storage_path=str(tmp_path), stop={"training_iteration": 1}, verbose=0))
    result = tuner.fit().get_best_result(metric="env_runners/num_env_steps_sampled_lifetime", mode="max")
    assert result.error is None
    assert result.metrics["env_runners"]["num_env_steps_sampled_lifetime"] == 100
    assert result.metrics["learners"][FAST_PATH_MODULE_ID]["num_module_steps_trained"] == 100 * 6


@pytest.mark.parametrize(("rows", "minibatch_size", "num_epochs", "shuffle"), [
    (10, 4, 3, True), (10, 4, 3, False), (8, 4, 2, True), (7, 10, 2, True), (9, None, 2, True), (9, None, 1, True),
    (12, 5, 1, True)])
def test_minibatches_are_rllibs(rows, minibatch_size, num_epochs, shuffle):
    """The same rows per minibatch, in the same order, as ``Learner.update``'s iterators (with
    their shuffle on numpy's global generator), chosen as ``Learner._create_iterator_if_necessary``
    chooses them."""
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
    from ray.rllib.utils.minibatch_utils import MiniBatchCyclicIterator, MiniBatchDummyIterator

    from rllib_adaps.rllib.array_training import minibatch_indices

    np.random.seed(0)
    batch = MultiAgentBatch({"m": SampleBatch({"row": np.arange(rows)})}, env_steps=rows)
    if minibatch_size or num_epochs > 1:
        iterator = MiniBatchCyclicIterator(batch, num_epochs=num_epochs, minibatch_size=minibatch_size or rows,
                                           shuffle_batch_per_epoch=bool(minibatch_size) and shuffle and num_epochs > 1)
    else:
        iterator = MiniBatchDummyIterator(batch, num_epochs=num_epochs, minibatch_size=minibatch_size)
    theirs = [mb.policy_batches["m"]["row"].tolist() for mb in iterator]
    np.random.seed(0)
    ours = [np.arange(rows)[index].tolist() for index in minibatch_indices(rows, minibatch_size, num_epochs, shuffle)]
    assert ours == theirs


def test_the_lean_update_is_learner_update(ray_local):
    """Exactly the same minibatches into ``Learner._update`` as RLlib's ``Learner.update`` on the
    same batch (two shuffled epochs, a minibatch that wraps), and the same losses, weights and
    learner metrics (timers and throughputs aside)."""
    from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch

    from rllib_adaps.rllib.array_training import learner_update

    config = rllib_adaps.configure_sharing(
        PPOConfig().environment("bps", env_config={"agents_per_type": [2, 1], "max_steps": 8})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2).training(lr=1e-3).debugging(seed=1), "nops", fast_path=True)
    algo = config.build_algo()
    try:
        learner = algo.learner_group._learner
        module = learner.module[FAST_PATH_MODULE_ID]
        batch = train_batch(module, algo.env_runner.sample_rollout(20), gamma=0.99, lambda_=0.95)  # 60 rows
        start = learner.get_state()  # not in it: the KL coefficient and the weights' sequence number
        start_kl, start_seq_no = learner.curr_kl_coeffs_per_module[FAST_PATH_MODULE_ID].detach().clone(), learner._weights_seq_no
        rllib_update = learner._update
        outcomes = []
        for lean in (False, True):
            seen = []

            def recording_update(minibatches):
                out = rllib_update(minibatches)
                seen.append(({k: torch.as_tensor(v).clone() for k, v in minibatches[FAST_PATH_MODULE_ID].items()},
                             float(out[1][FAST_PATH_MODULE_ID])))
                return out

            learner._update = recording_update
            learner.set_state(start)
            learner.curr_kl_coeffs_per_module[FAST_PATH_MODULE_ID].data.copy_(start_kl)
            learner._weights_seq_no = start_seq_no
            learner.metrics.reduce()  # nothing left from before
            np.random.seed(7)
            options = dict(num_epochs=2, minibatch_size=25, timesteps={})
            if lean:
                results = learner_update(learner, FAST_PATH_MODULE_ID, batch, shuffle=True, reduce=True, **options)
            else:
                results = learner.update(batch=MultiAgentBatch({FAST_PATH_MODULE_ID: SampleBatch(dict(batch))}, env_steps=60),
                                         shuffle_batch_per_epoch=True, **options)
            outcomes.append((learner.get_state()["rl_module"][FAST_PATH_MODULE_ID], results, seen))
        learner._update = rllib_update
        (rllib_weights, rllib_results, rllib_seen), (weights, results, seen) = outcomes
        assert len(seen) == len(rllib_seen) == 5  # 120 rows in minibatches of 25
        for (minibatch, loss), (rllib_minibatch, rllib_loss) in zip(seen, rllib_seen):
            assert minibatch.keys() == rllib_minibatch.keys()
            for key in minibatch:
                torch.testing.assert_close(minibatch[key], rllib_minibatch[key], rtol=0, atol=0, msg=key)
            assert loss == rllib_loss
        for key, value in rllib_weights.items():
            torch.testing.assert_close(weights[key], value, rtol=0, atol=0, msg=key)

        def comparable(results):  # timers and throughputs measure time
            flat = {}
            for key, value in results.items():
                if isinstance(value, dict):
                    flat.update({f"{key}/{k}": v for k, v in comparable(value).items()})
                elif "throughput" not in key and "timer" not in key:
                    flat[key] = value.peek() if hasattr(value, "peek") else value  # reduce() gives Stats
            return flat

        ours, theirs = comparable(results), comparable(rllib_results)
        assert ours.keys() == theirs.keys()
        assert ours == pytest.approx(theirs, rel=0, abs=0, nan_ok=True)
    finally:
        algo.stop()


def test_a_module_outside_policies_to_train_is_not_updated(ray_local):
    config = rllib_adaps.configure_sharing(
        PPOConfig().environment("bps", env_config={"agents_per_type": [2, 1], "max_steps": 8})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2).training(train_batch_size_per_learner=40, minibatch_size=20)
        .multi_agent(policies_to_train=[]).debugging(seed=1), "fups", fast_path=True)
    algo = config.build_algo()
    try:
        module = algo.learner_group._learner.module[FAST_PATH_MODULE_ID]
        before = {k: v.clone() for k, v in module.state_dict().items()}
        algo.train()
        assert isinstance(algo.training_step, ArrayTrainingStep)
        for key, value in module.state_dict().items():
            torch.testing.assert_close(value, before[key], rtol=0, atol=0, msg=key)
    finally:
        algo.stop()
