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
- ``train_batch``: values of every observation from the Learner's module (a few large forward
  passes), GAE for all slots at once (terminated: no bootstrap; truncated or cut: the value of the
  next observation, as RLlib), advantages standardised, rows in slot-major order (each slot's
  steps in time order, as RLlib's episode chunks).
- ``learner_update``: RLlib's ``Learner.update`` on that batch (its minibatches, epochs, loss,
  optimizer, metrics) without its per-minibatch Python.
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
from typing import Dict, List, Optional, Union

import numpy as np
import torch
from ray.rllib.algorithms.ppo import PPO
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing
from ray.rllib.utils.metrics import (
    ALL_MODULES,
    ENV_RUNNER_RESULTS,
    ENV_RUNNER_SAMPLING_TIMER,
    LEARNER_RESULTS,
    LEARNER_UPDATE_TIMER,
    MODULE_TRAIN_BATCH_SIZE_MEAN,
    NUM_ENV_STEPS_SAMPLED_LIFETIME,
    NUM_ENV_STEPS_TRAINED,
    NUM_ENV_STEPS_TRAINED_LIFETIME,
    NUM_MODULE_STEPS_TRAINED,
    NUM_MODULE_STEPS_TRAINED_LIFETIME,
    SYNCH_WORKER_WEIGHTS_TIMER,
    TIMERS,
    WEIGHTS_SEQ_NO,
)
from ray.rllib.utils.metrics.ray_metrics import TimerAndPrometheusLogger

from rllib_adaps.rllib.fast_path import FastPathEnvRunner, SlotRollout
from rllib_adaps.rllib.module import ARRAY_TRAINING_KEY
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID
from rllib_adaps.rllib.shims import log_values

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


def minibatch_indices(rows: int, minibatch_size: Optional[int], num_epochs: int, shuffle: bool) -> List[Union[slice, np.ndarray]]:
    """The rows of each minibatch, in the order ``Learner.update`` trains them.

    ``MiniBatchCyclicIterator``'s walk: minibatches of ``minibatch_size`` rows, the one that
    reaches the end filled up from the start, an epoch counted at each wrap, until
    ``num_epochs`` are covered. With ``shuffle`` (and more than one epoch, as ``Learner``
    asks), the batch is permuted with numpy's global generator at each wrap (so the first
    epoch is in batch order). No ``minibatch_size``: the whole batch once per epoch.
    """
    if not minibatch_size:
        return [slice(0, rows)] * num_epochs
    shuffle = shuffle and num_epochs > 1
    order: Optional[np.ndarray] = None  # None: batch order
    start, covered, out = 0, 0, []
    while covered < num_epochs:
        needed, parts = minibatch_size, []
        while start + needed >= rows:
            parts.append(slice(start, rows) if order is None else order[start:])
            needed -= rows - start
            start, covered = 0, covered + 1
            if shuffle:
                permutation = np.random.permutation(rows)
                order = permutation if order is None else order[permutation]
        if needed > 0:
            parts.append(slice(start, start + needed) if order is None else order[start:start + needed])
        start += needed
        if len(parts) == 1:
            out.append(parts[0])
        else:
            out.append(np.concatenate([np.arange(rows)[p] if isinstance(p, slice) else p for p in parts]))
    return out


def learner_update(learner, module_id: str, batch: Dict[str, torch.Tensor], *, num_epochs: int, minibatch_size: Optional[int],
                   shuffle: bool, timesteps: dict, reduce: bool):
    """``learner.update(batch=MultiAgentBatch({module_id: batch}), ...)`` without its
    per-minibatch Python: the same minibatches (``minibatch_indices``), the same
    ``Learner._update`` per minibatch, the same metrics (pushed once per update instead of
    once per minibatch, shims note 9). RLlib's loop spent a large share of each small
    minibatch slicing ``SampleBatch`` objects and logging."""
    learner._check_is_built()
    if not learner.should_module_be_updated(module_id):  # not in config.policies_to_train
        return learner.metrics.reduce() if reduce else None
    learner.before_gradient_based_update(timesteps=timesteps)
    learner._weights_seq_no += 1
    rows = len(batch[Columns.OBS])
    sizes = []
    for index in minibatch_indices(rows, minibatch_size, num_epochs, shuffle):
        minibatch = {key: value[index] for key, value in batch.items()}
        with TimerAndPrometheusLogger(learner._metrics_learner_inner_update):
            _, loss_per_module, _ = learner._update({module_id: minibatch})
        sizes.append(len(minibatch[Columns.OBS]))
    n, metrics = len(sizes), learner.metrics
    learner._metrics_all_modules_num_env_steps_trained.inc(value=rows * n)  # RLlib counts the whole batch per minibatch
    learner._metrics_all_modules_num_module_steps_trained.inc(value=sum(sizes))
    log_values(metrics, (module_id, WEIGHTS_SEQ_NO), [learner._weights_seq_no] * n, window=1)
    log_values(metrics, (module_id, MODULE_TRAIN_BATCH_SIZE_MEAN), sizes, reduce="mean")
    log_values(metrics, (module_id, NUM_MODULE_STEPS_TRAINED), sizes, reduce="sum")
    log_values(metrics, (module_id, NUM_MODULE_STEPS_TRAINED_LIFETIME), sizes, reduce="lifetime_sum", with_throughput=True)
    log_values(metrics, (ALL_MODULES, NUM_MODULE_STEPS_TRAINED), sizes, reduce="sum", with_throughput=True)
    log_values(metrics, (ALL_MODULES, NUM_MODULE_STEPS_TRAINED_LIFETIME), sizes, reduce="lifetime_sum", with_throughput=True)
    log_values(metrics, (ALL_MODULES, NUM_ENV_STEPS_TRAINED), [rows] * n, reduce="sum", with_throughput=True)
    log_values(metrics, (ALL_MODULES, NUM_ENV_STEPS_TRAINED_LIFETIME), [rows] * n, reduce="lifetime_sum", with_throughput=True)
    for mid, loss in loss_per_module.items():
        metrics.log_value(key=(mid, learner.TOTAL_LOSS_KEY), value=loss, window=1)
    learner.after_gradient_based_update(timesteps=timesteps)
    return metrics.reduce() if reduce else None


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
                results = learner_update(
                    learner, FAST_PATH_MODULE_ID, batch,
                    timesteps={NUM_ENV_STEPS_SAMPLED_LIFETIME: sampled, NUM_MODULE_STEPS_TRAINED_LIFETIME: trained},
                    num_epochs=config.num_epochs,
                    minibatch_size=config.minibatch_size,
                    shuffle=config.shuffle_batch_per_epoch,
                    reduce=update == updates - 1,  # learner metrics merge once per step
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
