"""The array training step: PPO's training step from the fast path's arrays, in one process.

RLlib's PPO step turns every sample into one ``SingleAgentEpisode`` per agent slot and
episode chunk, runs the learner connector pipeline over them (a bootstrap step appended to
each chunk, the batch assembled item by item, GAE per chunk), merges metrics and syncs
weights by state dict. On the fast path the data is already a ``[steps, slots]`` array, and
under the papers' A2C protocol those per-step costs come every 40 env steps
(``docs/results/speed_vs_reference.txt``). When the driver's EnvRunner samples
(``num_env_runners=0``) and the local Learner trains (``num_learners=0``), this step takes
the same update without them:

- ``FastPathEnvRunner.sample_rollout``: ``train_batch_size_per_learner`` env steps as arrays.
- ``train_batch``: values of every observation in one forward pass of the Learner's module,
  GAE for all slots at once (terminated: no bootstrap; truncated or cut: the value of the
  next observation, as RLlib), advantages standardised, rows in slot-major order (each slot's
  steps in time order, as RLlib's episode chunks).
- ``Learner.update(batch=...)``: RLlib's own minibatches, epochs, loss, optimizer, metrics.
- The EnvRunner's module takes the Learner's parameters by an in-place copy.

A training step runs as many such updates as ``min_sample_timesteps_per_iteration`` asks
for and merges metrics once. One difference from RLlib's step: RLlib's GAE connector
standardises advantages over the appended bootstrap rows too (loss-masked rows whose
advantages read across chunk boundaries); here only real rows count. Raw advantages and
value targets are equal (``tests/test_array_training.py``).

``configure_sharing(array_training=None)`` (default) uses it where ``array_training_problem``
finds nothing against it and logs which step runs; False: RLlib's step; True: this step or
an error saying why not.
"""

from __future__ import annotations

import inspect
import logging
import math
from typing import Dict, Optional

import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.policy.sample_batch import MultiAgentBatch, SampleBatch
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
)

from rllib_adaps.rllib.fast_path import FastPathEnvRunner, SlotRollout
from rllib_adaps.rllib.module import ARRAY_TRAINING_KEY
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID

logger = logging.getLogger("rllib_adaps")

#: Rows per critic forward pass when a rollout's values are computed.
VALUE_CHUNK_ROWS = 8192


def train_batch(module, rollout: SlotRollout, *, gamma: float, lambda_: float) -> Dict[str, torch.Tensor]:
    """PPO's train batch of a rollout: its real transitions with advantages and value targets."""
    steps, slots = rollout.valid.shape
    observations = torch.from_numpy(rollout.observations).reshape(-1, rollout.observations.shape[-1])
    with torch.no_grad():  # in chunks: one pass over 60k rows took twice as long (cache, fresh pages)
        values = torch.cat([module.compute_values({Columns.OBS: chunk}) for chunk in observations.split(VALUE_CHUNK_ROWS)])
    values = values.reshape(steps + 1, slots).numpy()
    columns = rollout.columns
    terminated, truncated = columns[Columns.TERMINATEDS], columns[Columns.TRUNCATEDS]
    continues = (gamma * lambda_) * ~(terminated | truncated)
    deltas = columns[Columns.REWARDS] + gamma * np.where(terminated, 0.0, values[1:]) - values[:-1]
    advantages = np.empty_like(deltas)
    running = np.zeros(slots, dtype=deltas.dtype)
    for k in range(steps - 1, -1, -1):  # a loop over time; slots are the vector
        running = deltas[k] + continues[k] * running
        advantages[k] = running
    rows = rollout.valid.T  # slot-major: [slots, steps]

    def real(x: np.ndarray) -> torch.Tensor:
        return torch.from_numpy(np.ascontiguousarray(x.swapaxes(0, 1)[rows]))

    targets = advantages + values[:-1]
    advantages = advantages.swapaxes(0, 1)[rows]
    advantages = (advantages - advantages.mean()) / max(1e-4, float(advantages.std()))  # as RLlib's GAE connector
    batch = {key: real(value) for key, value in columns.items()
             if key not in (Columns.REWARDS, Columns.TERMINATEDS, Columns.TRUNCATEDS)}
    batch[Columns.OBS] = real(rollout.observations[:-1])
    batch[Postprocessing.ADVANTAGES] = torch.from_numpy(advantages.astype(np.float32))
    batch[Postprocessing.VALUE_TARGETS] = real(targets.astype(np.float32))
    return batch


def _is_ppos_step(step) -> bool:
    """PPO's own ``training_step``, also inside a Ray actor, whose class wraps every method
    (``ray.util.tracing``) with ``functools.wraps``."""
    return inspect.unwrap(step) is PPO.training_step


def array_training_problem(algorithm) -> Optional[str]:
    """None if ``ArrayTrainingStep`` can take ``algorithm``'s training step, else why not."""
    config = algorithm.config
    runner = getattr(algorithm.env_runner_group, "local_env_runner", None) if algorithm.env_runner_group else None
    if not isinstance(algorithm, PPO) or not _is_ppos_step(type(algorithm).training_step):
        return f"{type(algorithm).__name__} is not PPO"
    if not isinstance(runner, FastPathEnvRunner):
        return "the run is on RLlib's multi-agent path"
    if config.num_env_runners:
        return f"remote EnvRunners sample (num_env_runners={config.num_env_runners})"
    if not algorithm.learner_group.is_local:
        return f"remote Learners train (num_learners={config.num_learners})"
    if getattr(config, "_learner_connector", None) is not None or not config.add_default_connectors_to_learner_pipeline:
        return "the config sets a learner connector"
    if config.batch_mode != "truncate_episodes" or config.count_steps_by != "env_steps":
        return f"batch_mode={config.batch_mode!r}, count_steps_by={config.count_steps_by!r}"
    hooks = set(runner._episode_hooks_in_use)
    if any(type(c).on_sample_end is not RLlibCallback.on_sample_end for c in runner._callbacks) or config.callbacks_on_sample_end:
        hooks.add("on_sample_end")
    if hooks:
        return f"callbacks implement {sorted(hooks)}, which need episodes"
    return None


class ArrayTrainingStep:
    """``Algorithm.training_step`` for PPO on the fast path, sampled and trained in this process."""

    def __init__(self, algorithm):
        self.algorithm = algorithm

    def __call__(self) -> None:
        algo, config = self.algorithm, self.algorithm.config
        runner, learner = algo.env_runner_group.local_env_runner, algo.learner_group._learner
        module = learner.module[FAST_PATH_MODULE_ID]
        copies = self._weight_copies(runner, module)
        batch_size = config.train_batch_size_per_learner
        updates = max(1, math.ceil((config.min_sample_timesteps_per_iteration or 0) / batch_size))
        sampled = algo.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        trained = algo.metrics.peek((LEARNER_RESULTS, ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), default=0)
        for update in range(updates):
            with algo.metrics.log_time((TIMERS, ENV_RUNNER_SAMPLING_TIMER)):
                rollout = runner.sample_rollout(batch_size, explore=config.explore)
            sampled += rollout.env_steps
            with algo.metrics.log_time((TIMERS, LEARNER_UPDATE_TIMER)):
                batch = train_batch(module, rollout, gamma=config.gamma, lambda_=config.lambda_)
                rows = len(batch[Columns.OBS])
                results = learner.update(
                    batch=MultiAgentBatch({FAST_PATH_MODULE_ID: SampleBatch(batch)}, env_steps=rows),
                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled, NUM_MODULE_STEPS_TRAINED_LIFETIME: trained},
                    num_epochs=config.num_epochs,
                    minibatch_size=config.minibatch_size,
                    shuffle_batch_per_epoch=config.shuffle_batch_per_epoch,
                    _no_metrics_reduce=update < updates - 1,  # learner metrics merge once per step
                )
                trained += rows * config.num_epochs
            with algo.metrics.log_time((TIMERS, SYNCH_WORKER_WEIGHTS_TIMER)):
                with torch.no_grad():
                    torch._foreach_copy_(*copies)
                runner._weights_seq_no = learner._weights_seq_no
        algo.metrics.aggregate([runner.get_metrics()], key=ENV_RUNNER_RESULTS)
        algo.metrics.aggregate([results], key=LEARNER_RESULTS)

    @staticmethod
    def _weight_copies(runner, module) -> tuple:
        """(EnvRunner parameters, Learner parameters): the inference-only module's, by name."""
        source = dict(module.named_parameters())
        names = [name for name, _ in runner.module.named_parameters()]
        missing = [name for name in names if name not in source]
        if missing:
            raise RuntimeError(f"array training: the Learner's module lacks the EnvRunner's parameters {missing[:3]}")
        return [p for _, p in runner.module.named_parameters()], [source[name] for name in names]


def install_array_training(algorithm) -> bool:
    """Replaces ``algorithm.training_step`` with ``ArrayTrainingStep`` where it applies (the
    module's ``array_training``: None automatic, True required, False never); logs which step
    runs and why. Returns whether."""
    choice = (getattr(algorithm.config.rl_module_spec, "model_config", None) or {}).get(ARRAY_TRAINING_KEY)
    if choice is False:
        logger.info("array training: off (array_training=False); RLlib's PPO training step")
        return False
    why_not = array_training_problem(algorithm)
    if why_not is not None:
        if choice is True:
            raise ValueError(f"array_training=True, but the array training step cannot run this config: {why_not}.")
        logger.info("array training: RLlib's training step (%s)", why_not)
        return False
    algorithm.training_step = ArrayTrainingStep(algorithm)
    logger.info("array training: PPO's update from the fast path's arrays, sampled and trained in this process")
    return True
