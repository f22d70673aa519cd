"""The plugin against the floor a user could write: env steps/s side by side in one process.

    python bench/speed_vs_reference.py --rounds 5                         # PPO on BPS v2 and A2C on BPS v1
    python bench/speed_vs_reference.py --protocols ppo --envs bps_v2,lbf,crware
    python bench/speed_vs_reference.py --protocols ppo --methods all      # each method's speed relative to FuPS

The plugin: ``configure_sharing(PPOConfig(), "fups")`` on the fast path, sampled by the
driver's EnvRunner and trained by the local Learner (``num_env_runners=0``, as
``bench/fast_path_speed.py``). The reference: ``bench/reference_loop.py``, plain PyTorch with
the same settings (its docstring lists them). Both are built once, warmed up by one iteration
each, then take turns, one iteration each per round; medians over rounds.

Protocols:
- ``ppo``: PPO FuPS, 8 env copies, batch 2,000 env steps (C-RWARE: 4,000), minibatch 500 agent
  rows (1,000), 1 epoch, 64x64; everything else RLlib's PPO defaults, which the reference
  copies (lr 5e-5, lambda 1, clip 0.3, value loss clamped at 10, KL penalty 0.2, no entropy
  bonus, no gradient clipping).
- ``a2c``: the campaign's A2C protocol on BPS v1 (``rllib_adaps.a2c_settings`` on 8 copies x
  5-step rollouts: one optimizer step per 40 env steps; one iteration = 50 such updates =
  2,000 env steps) against the reference A2C with the same settings.

``--methods``: the plugin's PPO with each sharing method (SePS and AdaPS fit their clusters in
the warm-up: ``identity_env_steps`` 200, ``num_clusters`` 3, a short VAE fit), timed in turns
with FuPS on the plugin; prints each method's env steps/s relative to FuPS.

Per iteration, time per agent step (seconds / (env steps x agents)) is split by wrapping the
plugin's methods with timers (exclusive time: a wrapped call's time less that of wrapped calls
inside it, so the parts add up to ``train()``). The coarse table lines up the plugin's parts
with the reference's; ``--detail`` prints every timed part of the plugin.
"""

from __future__ import annotations

import argparse
import os
import resource
import statistics
import sys
import time
from collections import defaultdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.*

from bench import reference_loop as ref
from rllib_adaps.rllib import array_training

SCENARIOS = {  # key: (env, env_config, train batch in env steps, minibatch in agent rows)
    "bps_v2": ("bps", {"preset": "v2"}, 2000, 500),
    "lbf": ("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50}, 2000, 500),
    "crware": ("crware", {"task": "tiny-4ag", "max_steps": 500}, 4000, 1000),
}
A2C_SCENARIO = ("bps", {"preset": "v1"})
COPIES = 8
A2C_ROLLOUT, A2C_ENV_STEPS_PER_ITERATION = 5, 2000
METHODS = ("nops", "fups", "fups_id", "seps", "snp", "adaps")
PRETRAINING = {"identity_env_steps": 200, "num_clusters": 3, "vae": {"min_updates": 200, "epochs": 2}}

# Coarse parts, the same for both sides: plugin timer -> part.
COARSE = {
    "env": "env",
    "module_forward": "forward (sampling)",
    "env_to_module": "sampling bookkeeping",
    "module_to_env": "sampling bookkeeping",
    "sample": "sampling bookkeeping",
    "learner_connector": "learner batch (connectors, GAE)",
    "make_batch": "learner batch (connectors, GAE)",
    "forward_train": "learn forward + loss",
    "compute_losses": "learn forward + loss",
    "update_step": "learn forward + loss",
    "compute_gradients": "backward",
    "postprocess_gradients": "optimizer",
    "apply_gradients": "optimizer",
    "adam_step": "optimizer",
    "learner_update": "learner other (minibatches, logging)",
    "learner_group_update": "learner other (minibatches, logging)",
    "learner_metrics_reduce": "metrics, results, callbacks",
    "weight_sync": "weight sync",
    "runner_get_metrics": "metrics, results, callbacks",
    "callbacks": "metrics, results, callbacks",
    "training_step": "metrics, results, callbacks",
    "train": "metrics, results, callbacks",
}
REFERENCE_COARSE = {
    "env": "env",
    "forward": "forward (sampling)",
    "sampling": "sampling bookkeeping",
    "gae": "learner batch (connectors, GAE)",
    "learn_forward": "learn forward + loss",
    "backward": "backward",
    "optimizer": "optimizer",
    "learn_other": "learner other (minibatches, logging)",
}
PARTS = list(dict.fromkeys([*REFERENCE_COARSE.values(), *COARSE.values()]))


# --------------------------------------------------------------------------- timers
class Timers:
    """Exclusive times of wrapped calls: a call's time less the time of wrapped calls inside it."""

    def __init__(self):
        self.exclusive = defaultdict(float)
        self._stack = []  # [start, time spent in wrapped children]

    def wrap(self, name, fn):
        def timed(*args, **kwargs):
            frame = [time.perf_counter(), 0.0]
            self._stack.append(frame)
            try:
                return fn(*args, **kwargs)
            finally:
                self._stack.pop()
                elapsed = time.perf_counter() - frame[0]
                self.exclusive[name] += elapsed - frame[1]
                if self._stack:
                    self._stack[-1][1] += elapsed

        timed.__wrapped__ = fn
        return timed

    def patch(self, owner, attr, name):
        setattr(owner, attr, self.wrap(name, getattr(owner, attr)))

    def take(self) -> dict:
        out, self.exclusive = dict(self.exclusive), defaultdict(float)
        return out


TIMERS = Timers()


class _TimedPipeline:
    """A connector pipeline whose pieces are timed one by one (``<prefix>:<piece>``)."""

    def __init__(self, pipeline, prefix: str = "lc"):
        self._pipeline = pipeline
        pipeline.connectors = [_TimedPiece(c, prefix) for c in pipeline.connectors]

    def __getattr__(self, name):
        return getattr(self._pipeline, name)

    def __call__(self, **kwargs):
        return self._pipeline(**kwargs)


class _TimedPiece:
    def __init__(self, connector, prefix: str = "lc"):
        self._connector = connector
        self._call = TIMERS.wrap(f"{prefix}:{type(connector).__name__}", connector.__call__)
        self.__class__ = type(type(connector).__name__, (_TimedPiece,), {})  # RLlib names the piece's metrics by class

    def __getattr__(self, name):
        return getattr(self._connector, name)

    def __call__(self, **kwargs):
        return self._call(**kwargs)


_EPISODE_METHODS = ("add_env_reset", "add_env_step", "cut", "to_numpy", "validate", "get_return", "__len__")


def instrument_episodes() -> None:
    """Times ``SingleAgentEpisode``'s per-step and per-chunk methods (``ep:<method>``), for every
    algorithm in the process. Costs about a microsecond per call (``add_env_step`` is called
    once per agent step), so it is left out unless asked for (``--episode-detail``)."""
    from ray.rllib.env.single_agent_episode import SingleAgentEpisode

    for method in _EPISODE_METHODS:
        TIMERS.patch(SingleAgentEpisode, method, f"ep:{method}")


def instrument(algo, episodes: bool = False) -> None:
    """Wraps the methods one ``train()`` of ``algo`` goes through (local EnvRunner, local Learner)."""
    runner = algo.env_runner
    if episodes:
        TIMERS.patch(runner, "_new_episode", "ep:new_episode (runner)")
        TIMERS.patch(runner, "_make_on_episode_callback", "ep:episode callbacks (runner)")
    TIMERS.patch(runner.env, "step", "env")
    TIMERS.patch(runner.env, "reset", "env")
    TIMERS.patch(runner.module, "forward_exploration", "module_forward")
    TIMERS.patch(runner, "_env_to_module", "env_to_module")
    _TimedPipeline(runner._module_to_env, "m2e")  # the array step calls the pieces directly
    TIMERS.patch(runner, "sample", "sample")
    TIMERS.patch(runner, "sample_rollout", "sample")
    TIMERS.patch(array_training, "train_batch", "make_batch")
    TIMERS.patch(array_training, "learner_update", "learner_update")
    TIMERS.patch(runner, "get_metrics", "runner_get_metrics")
    learner = algo.learner_group._learner
    learner._learner_connector = _TimedPipeline(learner._learner_connector)
    TIMERS.patch(learner, "_make_batch_if_necessary", "make_batch")
    TIMERS.patch(learner, "update", "learner_update")
    TIMERS.patch(learner, "_update", "update_step")
    TIMERS.patch(learner.module, "forward_train", "forward_train")
    TIMERS.patch(learner, "compute_losses", "compute_losses")
    TIMERS.patch(learner, "compute_gradients", "compute_gradients")
    TIMERS.patch(learner, "postprocess_gradients", "postprocess_gradients")
    TIMERS.patch(learner, "apply_gradients", "apply_gradients")
    for module_id, names in learner._module_optimizers.items():
        for name in names:
            TIMERS.patch(learner.get_optimizer(module_id, name), "step", "adam_step")
    TIMERS.patch(learner.metrics, "reduce", "learner_metrics_reduce")
    TIMERS.patch(algo.learner_group, "update", "learner_group_update")
    TIMERS.patch(algo.env_runner_group, "sync_weights", "weight_sync")
    TIMERS.patch(algo, "training_step", "training_step")
    TIMERS.patch(algo, "train", "train")
    for callback in (algo.callbacks if isinstance(algo.callbacks, list) else [algo.callbacks]):
        if type(callback).__name__ != "RLlibCallback":
            TIMERS.patch(callback, "on_train_result", "callbacks")


def coarse(parts: dict, mapping: dict) -> dict:
    out = defaultdict(float)
    for key, value in parts.items():
        if key.startswith("lc:"):
            part = "learner batch (connectors, GAE)"
        elif key.startswith("m2e:"):
            part = "sampling bookkeeping"
        elif key.startswith("ep:"):
            part = "sampling bookkeeping"
        else:
            part = mapping.get(key, key)
        out[part] += value
    return out


def peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


# --------------------------------------------------------------------------- the two sides
def plugin_ppo(name, env_config, batch, minibatch, method="fups", **options):
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps

    config = (
        PPOConfig()
        .environment(name, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=COPIES)
        .training(train_batch_size_per_learner=batch, minibatch_size=minibatch, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=0)
    )
    config = rllib_adaps.configure_sharing(config, method, fast_path=True, **options)
    return config.build_algo(), len(config.rl_module_spec.model_config["agent_ids"])


def plugin_a2c(name, env_config):
    """The campaign's A2C protocol (``bench/campaign/protocol.py``) with FuPS on ``num_env_runners=0``."""
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps

    config = (
        PPOConfig()
        .environment(name, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=COPIES, rollout_fragment_length=A2C_ROLLOUT)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
        .training(train_batch_size_per_learner=A2C_ROLLOUT * COPIES)
        .reporting(min_sample_timesteps_per_iteration=A2C_ENV_STEPS_PER_ITERATION, min_time_s_per_iteration=0)
        .debugging(seed=0)
    )
    config = rllib_adaps.configure_sharing(rllib_adaps.a2c_settings(config), "fups", fast_path=True)
    return config.build_algo(), len(config.rl_module_spec.model_config["agent_ids"])


def plugin_iteration(algo, agents: int) -> dict:
    from ray.rllib.utils.metrics import (
        ENV_RUNNER_RESULTS,
        NUM_ENV_STEPS_SAMPLED_LIFETIME,
    )

    key = (ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME)
    before = algo.metrics.peek(key, default=0)
    TIMERS.take()
    start = time.perf_counter()
    result = algo.train()
    seconds = time.perf_counter() - start
    steps = algo.metrics.peek(key) - before
    per = 1e6 / (steps * agents)
    parts = {k: v * per for k, v in TIMERS.take().items()}
    fit = result.get("identity_pretraining", {})
    return {"env_steps_per_s": steps / seconds, "total": seconds * per, "parts": parts,
            "clusters": fit.get("num_clusters") if fit.get("done") else None}


def reference_iteration(runner, iteration) -> dict:
    result = iteration(runner)
    parts = dict(result["us_per_agent_step"])
    total = parts.pop("total")
    return {"env_steps_per_s": result["env_steps_per_s"], "total": total, "parts": parts, "updates": result["updates"]}


def medians(rows: list) -> dict:
    keys = {k for r in rows for k in r["parts"]}
    return {"env_steps_per_s": statistics.median(r["env_steps_per_s"] for r in rows),
            "total": statistics.median(r["total"] for r in rows),
            "parts": {k: statistics.median(r["parts"].get(k, 0.0) for r in rows) for k in keys}}


def take_turns(sides: dict, rounds: int) -> dict:
    """``sides``: label -> zero-argument iteration function. One warm-up each, then rounds in turn."""
    for run in sides.values():
        run()
    rows = {label: [] for label in sides}
    for _ in range(rounds):
        for label, run in sides.items():
            rows[label].append(run())
    return rows


def report(title: str, plain: dict, rows: dict, agents: int, detail: bool) -> None:
    """``plain``: rounds without the plugin's timers (the ratio); ``rows``: rounds with them (the parts)."""
    med = {label: medians(r) for label, r in plain.items()}
    plugin, reference = med["plugin"], med["reference"]
    print(f"\n{title}; {agents} agents; {len(plain['plugin'])} rounds, medians")
    ratios = [p["env_steps_per_s"] / r["env_steps_per_s"] for p, r in zip(plain["plugin"], plain["reference"])]
    print(f"env steps/s: plugin {plugin['env_steps_per_s']:.0f}, reference {reference['env_steps_per_s']:.0f}, "
          f"plugin/reference {plugin['env_steps_per_s'] / reference['env_steps_per_s']:.2f} "
          f"(per round: {', '.join(f'{x:.2f}' for x in ratios)})")
    med = {label: medians(r) for label, r in rows.items()}
    plugin, reference = med["plugin"], med["reference"]
    print(f"the same with the plugin's parts timed ({len(rows['plugin'])} more rounds; the timers cost the plugin "
          f"{plugin['total'] - medians(plain['plugin'])['total']:.2f} us per agent step):")
    cp, cr = coarse(plugin["parts"], COARSE), coarse(reference["parts"], REFERENCE_COARSE)
    print(f"{'us per agent step':40} {'plugin':>9} {'reference':>10} {'difference':>11}")
    for part in PARTS:
        p, r = cp.get(part, 0.0), cr.get(part, 0.0)
        print(f"{part:40} {p:9.2f} {r:10.2f} {p - r:11.2f}")
    unaccounted_p = plugin["total"] - sum(cp.values())
    print(f"{'(rest: medians of parts do not add up)':40} {unaccounted_p:9.2f} {reference['total'] - sum(cr.values()):10.2f}")
    print(f"{'total':40} {plugin['total']:9.2f} {reference['total']:10.2f} {plugin['total'] - reference['total']:11.2f}")
    if detail:
        print("plugin, every timed part (exclusive us per agent step):")
        for key, value in sorted(plugin["parts"].items(), key=lambda kv: -kv[1]):
            print(f"  {key:44} {value:8.2f}")
    print(f"peak RSS of the process so far: {peak_rss_mib():.0f} MiB")


# --------------------------------------------------------------------------- protocols
def ppo_vs_reference(key: str, rounds: int, detail: bool, episodes: bool = False) -> None:
    name, env_config, batch, minibatch = SCENARIOS[key]
    algo, agents = plugin_ppo(name, env_config, batch, minibatch)
    runner = ref.Runner(ref.Settings(env=name, env_config=dict(env_config), copies=COPIES, batch_env_steps=batch,
                                     minibatch_rows=minibatch))
    sides = {"plugin": lambda: plugin_iteration(algo, agents),
             "reference": lambda: reference_iteration(runner, ref.ppo_iteration)}
    plain = take_turns(sides, rounds)
    instrument(algo, episodes)
    rows = take_turns(sides, rounds)
    algo.stop()
    report(f"PPO FuPS {key}: {name} {env_config}, {COPIES} copies, batch {batch} env steps, minibatch {minibatch} rows, "
           f"1 epoch, 64x64 relu (reference: {rows['reference'][-1]['updates']} optimizer steps/iteration)", plain, rows, agents,
           detail)


def a2c_vs_reference(rounds: int, detail: bool, episodes: bool = False) -> None:
    name, env_config = A2C_SCENARIO
    algo, agents = plugin_a2c(name, env_config)
    runner = ref.Runner(ref.a2c_settings(env=name, env_config=dict(env_config), copies=COPIES,
                                         batch_env_steps=A2C_ROLLOUT * COPIES))
    iteration = lambda r: ref.a2c_iteration(r, A2C_ENV_STEPS_PER_ITERATION)
    sides = {"plugin": lambda: plugin_iteration(algo, agents), "reference": lambda: reference_iteration(runner, iteration)}
    plain = take_turns(sides, rounds)
    instrument(algo, episodes)
    rows = take_turns(sides, rounds)
    algo.stop()
    report(f"A2C FuPS (a2c_settings) bps_v1: {COPIES} copies x {A2C_ROLLOUT}-step rollouts, one update per "
           f"{A2C_ROLLOUT * COPIES} env steps, {A2C_ENV_STEPS_PER_ITERATION} env steps per iteration", plain, rows, agents, detail)


def methods_vs_fups(key: str, methods: list, rounds: int) -> None:
    name, env_config, batch, minibatch = SCENARIOS[key]
    algos = {}
    for method in dict.fromkeys(["fups", *methods]):
        options = dict(PRETRAINING) if method in ("seps", "adaps") else {}
        algos[method] = plugin_ppo(name, env_config, batch, minibatch, method, **options)
        instrument(algos[method][0])
    rows = take_turns({m: (lambda a=a, n=n: plugin_iteration(a, n)) for m, (a, n) in algos.items()}, rounds)
    for algo, _ in algos.values():
        algo.stop()
    fups = statistics.median(r["env_steps_per_s"] for r in rows["fups"])
    print(f"\nPPO, each method on the plugin against FuPS, {key}; {rounds} rounds, medians "
          f"(SePS/AdaPS fitted in the warm-up: {PRETRAINING})")
    print(f"{'method':10} {'env steps/s':>12} {'vs FuPS':>8} {'us/agent step':>14}   largest parts")
    for method, r in rows.items():
        m = medians(r)
        top = sorted(coarse(m["parts"], COARSE).items(), key=lambda kv: -kv[1])[:3]
        fitted = "" if r[0].get("clusters") is None else f" [fitted before timing: {r[0]['clusters']:.0f} clusters]"
        print(f"{method:10} {m['env_steps_per_s']:12.0f} {m['env_steps_per_s'] / fups:8.2f} {m['total']:14.1f}   "
              + ", ".join(f"{k} {v:.1f}" for k, v in top) + fitted)
    print(f"peak RSS of the process so far: {peak_rss_mib():.0f} MiB")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--protocols", default="ppo,a2c", help="ppo (on --envs), a2c (BPS v1)")
    parser.add_argument("--envs", default="bps_v2", help=f"PPO scenarios: {','.join(SCENARIOS)}")
    parser.add_argument("--methods", default="", help=f"'all' or some of {','.join(METHODS)}: each against FuPS on the plugin")
    parser.add_argument("--detail", action="store_true", help="every timed part of the plugin")
    parser.add_argument("--episode-detail", action="store_true",
                        help="also time SingleAgentEpisode's methods (ep:...; adds about 1 us per call to the plugin's side)")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch intra-op threads (0: torch's default). 1 by default: on a shared 2-core machine a second "
                             "thread made single iterations of either side up to 20x slower (thread pool waits)")
    args = parser.parse_args()

    import ray
    import torch

    import rllib_adaps

    if args.threads:
        torch.set_num_threads(args.threads)
    os.environ.setdefault("RAY_ADDRESS", "local")  # an instance of our own, never a cluster left running
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    if args.episode_detail:
        instrument_episodes()
    print(f"plugin vs plain PyTorch reference, one process, taking turns (torch threads {torch.get_num_threads()}, "
          f"ray {ray.__version__}, torch {torch.__version__})")
    try:
        protocols = [p for p in args.protocols.split(",") if p]
        if "ppo" in protocols:
            for key in args.envs.split(","):
                ppo_vs_reference(key, args.rounds, args.detail, args.episode_detail)
        if "a2c" in protocols:
            a2c_vs_reference(args.rounds, args.detail, args.episode_detail)
        if args.methods:
            methods = list(METHODS) if args.methods == "all" else args.methods.split(",")
            for key in args.envs.split(","):
                methods_vs_fups(key, methods, args.rounds)
    finally:
        ray.shutdown()
    print(f"peak RSS of the process: {peak_rss_mib():.0f} MiB")


if __name__ == "__main__":
    main()
