"""Soak: AdaPS training with 2 EnvRunners while an EnvRunner is killed every few minutes.

Reports iterations completed, EnvRunner restarts, whether any sample after clustering came
from an unclustered module, and whether returns keep improving (mean of the first vs the
last fifth of iterations). Not a CI test.

    python bench/soak.py --minutes 30 --kill-every 180 > docs/results/soak.txt
"""

from __future__ import annotations

import argparse
import json
import os
import random
import time

import numpy as np
import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback

import rllib_adaps
from rllib_adaps.rllib.callback import RESULT_KEY
from rllib_adaps.rllib.module_ids import engine_module


class StaleModuleProbe(RLlibCallback):
    """Counts agent steps sampled by a module that is not clustered (per iteration)."""

    def on_sample_end(self, *, env_runner, metrics_logger, samples, **kwargs):
        module = engine_module(env_runner)  # the one engine module, on either path
        stale = 0 if module.is_clustered() else sum(ep.agent_steps() for ep in samples)
        metrics_logger.log_value("stale_agent_steps", stale, reduce="sum", clear_on_reduce=True)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--minutes", type=float, default=30)
    parser.add_argument("--kill-every", type=float, default=180, help="seconds between kills")
    parser.add_argument("--preset", default="v1")
    args = parser.parse_args()

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False)
    config = (
        PPOConfig()
        .environment("bps", env_config={"preset": args.preset})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=4)
        .training(lr=3e-4, entropy_coeff=0.01, train_batch_size_per_learner=2000, minibatch_size=500, num_epochs=4)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .fault_tolerance(restart_failed_env_runners=True)
        .callbacks(StaleModuleProbe)
    )
    algo = rllib_adaps.configure_sharing(config, "adaps", shared_training_env_steps=10_000, identity_env_steps=1_000).build_algo()
    rng = random.Random(0)
    start = last_kill = time.time()
    returns, kills, stale_after_fit, fit_iteration = [], 0, 0, None
    while time.time() - start < args.minutes * 60:
        result = algo.train()
        it = result["training_iteration"]
        ret = result["env_runners"].get("episode_return_mean", float("nan"))
        returns.append(ret)
        if fit_iteration is None and result[RESULT_KEY]["done"]:
            fit_iteration = it
        elif fit_iteration is not None and it > fit_iteration + 1:
            stale_after_fit += int(result["env_runners"].get("stale_agent_steps", 0))
        if time.time() - last_kill > args.kill_every:
            ids = algo.env_runner_group.healthy_env_runner_ids()
            if ids:
                victim = rng.choice(ids)
                ray.kill(algo.env_runner_group._worker_manager._actors[victim], no_restart=False)
                kills += 1
                last_kill = time.time()
                print(f"[{time.time() - start:6.0f}s] killed EnvRunner {victim}", flush=True)
        print(f"[{time.time() - start:6.0f}s] iter {it} return {ret:.2f} restored so far {algo._counters['total_num_restored_workers']}", flush=True)
    fifth = max(1, len(returns) // 5)
    summary = {
        "minutes": args.minutes,
        "iterations": len(returns),
        "kills": kills,
        "restored_env_runners": int(algo._counters["total_num_restored_workers"]),
        "clustered_at_iteration": fit_iteration,
        "stale_agent_steps_after_clustering": stale_after_fit,
        "mean_return_first_fifth": float(np.nanmean(returns[:fifth])),
        "mean_return_last_fifth": float(np.nanmean(returns[-fifth:])),
        "pid": os.getpid(),
    }
    summary["returns_improved"] = summary["mean_return_last_fifth"] > summary["mean_return_first_fifth"]
    print(json.dumps(summary, indent=2))
    algo.stop()


if __name__ == "__main__":
    main()
