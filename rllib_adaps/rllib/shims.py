"""Every workaround for an RLlib 2.60 quirk, in one place (each says what it works around).

1. ``LearnerGroup.foreach_learner`` returns plain values for a local Learner but result
   objects for remote ones: ``foreach_learner`` returns plain values for both.
2. Weights pushed to remote EnvRunners after a restore are not awaited
   (``sync_weights(timeout_seconds=0)``), evaluation EnvRunners get none, and a push is
   dropped while another is in flight: right after ``Algorithm.from_checkpoint`` a remote
   EnvRunner held a freshly initialised module until the next ``train()``.
   ``wrap_restores`` makes every restore end with an awaited push to every EnvRunner.
3. ``Algorithm.from_checkpoint`` and ``restore_from_path`` fire no callback
   (``on_checkpoint_loaded`` fires only on Tune's restore path); ``wrap_restores`` is the
   hook for all three paths (Tune's ``load_checkpoint`` calls ``restore_from_path`` too).
4. ``AlgorithmConfig.get_multi_rl_module_spec(inference_only=True)`` marks only a single
   ``RLModuleSpec`` inference-only: specs inside a user's ``MultiRLModuleSpec`` keep their
   critic on every EnvRunner. ``configure_sharing`` therefore sets one ``RLModuleSpec``
   (RLlib builds the plain ``MultiRLModule`` around it), and the check that a checkpoint holds
   the same module ids runs before each restore here instead of in a MultiRLModule subclass.
5. No callback fires between an Algorithm's set-up (including a restore into it) and its
   first training step: ``on_algorithm_init`` comes before ``from_checkpoint`` restores.
   ``before_first_training_step`` runs work there, so that it can see what a restore adopted.
6. ``SingleAgentEnvRunner`` counts every sub-env step as an env step, builds its vector env
   with ``gym.make_vec`` (sub-envs = ``num_envs_per_env_runner``) and calls every per-episode
   hook for every sub-env and step, whether a callback implements it or not. The fast path's
   agent slots need env steps, env episodes and env copies instead: those overrides live in
   one subclass, ``rllib_adaps.rllib.fast_path.FastPathEnvRunner`` (``sample``, ``make_env``,
   ``_increase_sampled_metrics``, ``get_metrics``, ``_new_episode``,
   ``_make_on_episode_callback``), not here, because they are the fast path itself.
7. ``TorchLearner`` builds ``torch.optim.Adam(params)``, which on CPU runs torch's per-tensor
   loop: several kernels per parameter tensor and step. ``fused_adam`` switches every Learner's
   Adam to torch's fused kernel (the same update in one pass; ``bench/speed_vs_reference.py``).
   A restore loads the checkpoint's optimizer settings back, so it runs after restores too.
8. ``TorchLearner.apply_gradients`` tests every gradient tensor for nan/inf twice with
   ``torch.isfinite(...).all()``, which on CPU is four kernels and temporaries per tensor: about
   60x a sum over the same elements, and with NoPS's slices a larger share of each step than
   Adam itself. ``check_gradients_once`` tests the sum of all gradients instead (finite only
   if every element is); when it is finite the gradients are set and the optimizers step, as
   RLlib does after its checks pass, and otherwise RLlib's own method runs (zeroing and
   warning as before). Not installed where RLlib's method does more (grad scalers, torch LR
   schedulers, ``torch_skip_nan_gradients``).
9. ``MetricsLogger.log_value`` walks the nested key and checks for its ``Stats`` on every value,
   and ``log_dict`` adds a Python tree walk: one env episode of 30 agents (RLlib's per-episode
   and per-agent metrics) cost about 0.4 ms. ``log_values`` creates the ``Stats`` as
   ``log_value`` would and pushes a column of values into it in order (the same window).
10. Not RLlib's but torch's, on CPU: Adam's moments of a parameter slice whose gradient stays
   zero (NoPS's and SePS's slices absent from a minibatch) decay through float32's denormal
   range, where every multiply takes a slow microcode path: with 600 NoPS slices the fused
   Adam step took 33 ms instead of 7. ``torch.set_flush_denormal`` sets only the calling
   thread, while the step runs on all of torch's OpenMP threads. The optimizer steps of note 8
   run inside ``denormals_flushed``, which sets every torch thread's floating-point
   environment (libgomp runs ``fesetenv`` on each) and restores it after, about 6 us a step.
   A moment below float32's smallest normal number becomes 0; the update it would have made
   is under float32's resolution at any parameter of normal size (``tests/test_shims.py``).
"""

from __future__ import annotations

import contextlib
import functools
from typing import Any, Callable, Iterator, List

import numpy as np
import ray
import torch
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE


def foreach_learner(algorithm, fn: Callable[[Any], Any]) -> List[Any]:
    """``fn(learner)`` on every Learner; plain results for local and remote Learners alike."""
    results = algorithm.learner_group.foreach_learner(fn)
    if isinstance(results, list):
        return results
    return [call.get() for call in results]


def env_runner_groups(algorithm) -> list:
    """The training and (if any) evaluation EnvRunner groups."""
    return [g for g in (algorithm.env_runner_group, getattr(algorithm, "eval_env_runner_group", None)) if g is not None]


def push_modules_to_env_runners(algorithm) -> None:
    """Sends the Learners' inference-only module state to every EnvRunner and waits for it."""
    state = algorithm.learner_group.get_state(components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}", inference_only=True)
    ref = ray.put({COMPONENT_RL_MODULE: state[COMPONENT_LEARNER][COMPONENT_RL_MODULE]})

    def load(env_runner):
        env_runner.set_state(ray.get(ref))

    for group in env_runner_groups(algorithm):
        group.foreach_env_runner(load, local_env_runner=True, timeout_seconds=None)


def wrap_restores(algorithm, module_ids: List[str], after: Callable[[Any], None]) -> None:
    """Every restore of ``algorithm`` checks the checkpoint's module ids first, and ends with
    an awaited push to every EnvRunner, then ``after(algorithm)``.

    Set on the instance: ``Algorithm.from_checkpoint`` builds the Algorithm (firing
    ``on_algorithm_init``, where this is called) and then calls ``restore_from_path`` on it.
    """
    from rllib_adaps.rllib.checkpoints import check_algorithm_checkpoint

    original = algorithm.restore_from_path

    def restore_from_path(path, *args, **kwargs):
        if kwargs.get("component") is None:
            check_algorithm_checkpoint(path, module_ids)
        out = original(path, *args, **kwargs)
        push_modules_to_env_runners(algorithm)
        after(algorithm)
        return out

    algorithm.restore_from_path = restore_from_path


def before_first_training_step(algorithm, fn: Callable[[Any], None]) -> None:
    """Runs ``fn(algorithm)`` once, at the start of the first ``train()`` (before any sampling of
    that iteration). If ``fn`` raises, the next ``train()`` runs it again."""
    original = algorithm.training_step

    def training_step(*args, **kwargs):
        fn(algorithm)
        algorithm.training_step = original
        return original(*args, **kwargs)

    algorithm.training_step = training_step


def _fuse_adam(learner) -> int:
    fused = 0
    for optimizer in learner._named_optimizers.values():
        if type(optimizer) is not torch.optim.Adam:
            continue
        for group in optimizer.param_groups:
            usable = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in group["params"])
            if usable and not group["differentiable"] and not group["fused"]:
                group["fused"], group["foreach"] = True, False
                fused += 1
    return fused


def fused_adam(algorithm) -> None:
    """Every Learner's ``torch.optim.Adam`` takes torch's fused kernel (note 7)."""
    foreach_learner(algorithm, _fuse_adam)


def _check_gradients_once(learner) -> bool:
    if learner.config.torch_skip_nan_gradients or learner._grad_scalers is not None or learner._lr_scheduler_classes is not None:
        return False
    rllib_apply_gradients = learner.apply_gradients

    def apply_gradients(gradients_dict) -> None:
        grads = [g for g in gradients_dict.values() if g is not None]
        if grads and not torch.isfinite(torch.stack([g.sum() for g in grads]).sum()):
            return rllib_apply_gradients(gradients_dict)  # some nan/inf (or an overflowing sum)
        for pid, grad in gradients_dict.items():
            learner._params[pid].grad = grad
        with denormals_flushed():
            for module_id, names in learner._module_optimizers.items():
                for name in names:
                    learner.get_optimizer(module_id, name).step()

    learner.apply_gradients = apply_gradients
    return True


def denormals_are_flushed() -> bool:
    """Whether this thread's CPU treats float32 denormals as zero (a multiply tells)."""
    return float(np.float32(np.finfo(np.float32).tiny / 4) * np.float32(1.0)) == 0.0


@functools.lru_cache(maxsize=1)
def _set_every_torch_thread():
    """``(set_environment, get_environment)``: set every thread of torch's OpenMP pool (this
    thread included) to a saved C floating-point environment, and save this thread's; both
    None where torch does not run on libgomp or libm lacks ``fesetenv``."""
    import ctypes
    import ctypes.util
    import os

    try:
        gomp = ctypes.CDLL(os.path.join(os.path.dirname(torch.__file__), "lib", "libgomp.so.1"))
        libm = ctypes.CDLL(ctypes.util.find_library("m"))
        fesetenv = ctypes.cast(libm.fesetenv, ctypes.c_void_p)
    except (OSError, AttributeError, TypeError):
        return None, None
    gomp.GOMP_parallel.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_uint, ctypes.c_uint]
    gomp.GOMP_parallel.restype = None

    def set_environment(environment) -> None:  # GOMP_parallel runs fesetenv(environment) on each thread
        gomp.GOMP_parallel(fesetenv, ctypes.cast(environment, ctypes.c_void_p), torch.get_num_threads(), 0)

    def get_environment():
        environment = ctypes.create_string_buffer(256)  # >= sizeof(fenv_t)
        libm.fegetenv(environment)
        return environment

    return set_environment, get_environment


@contextlib.contextmanager
def denormals_flushed() -> Iterator[None]:
    """torch's threads flush float32 denormals to zero inside the block (note 10), and get
    the environment of this thread back after. A thread that flushes already, or a CPU without
    the setting, runs the block as it is."""
    if denormals_are_flushed() or not torch.set_flush_denormal(True):
        yield
        return
    set_environment, get_environment = _set_every_torch_thread()
    if set_environment is None:  # this thread only
        try:
            yield
        finally:
            torch.set_flush_denormal(False)
        return
    flushing = get_environment()
    torch.set_flush_denormal(False)
    plain = get_environment()
    set_environment(flushing)
    try:
        yield
    finally:
        set_environment(plain)


def check_gradients_once(algorithm) -> None:
    """Every Learner tests its gradients for nan/inf in one pass (note 8)."""
    foreach_learner(algorithm, _check_gradients_once)


def log_values(metrics, key, values: list, **stats_options) -> None:
    """``metrics.log_value(key, v, **stats_options)`` for each of ``values`` in order (note 9)."""
    if not values:
        return
    metrics.log_value(key, values[0], **stats_options)
    stats = metrics._get_key(key)
    for value in values[1:]:
        stats.push(value)
