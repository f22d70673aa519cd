"""Speed of the sharing engine against full sharing and against plain RLlib, side by side.

    python bench/engine_speed.py --agents 120 --types 3 --rounds 5 > docs/results/engine_speed.txt

Every configuration is built once in this process (local EnvRunner, local Learner: no Ray
scheduling noise), then the configurations take turns: each round, each runs ``--iters`` PPO
iterations and its time per agent step is recorded. Ratios are medians over rounds of
FuPS time / method time (>= 1: as fast as FuPS or faster).

- ``plain``: RLlib's own DefaultPPOTorchRLModule, one module shared by all agents, no plugin
  piece (no agent-index connector, no callback): the cost of the plugin itself.
- ``fups``: the engine with one slice, no masks.
- ``nops``: one slice per agent (N slices, grouped matmuls).
- ``seps``: K slices, tables installed as after a fit (K = number of types).
- ``adaps``: one slice, K mask rows installed as after a fit.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np


def build(method: str, agents: int, types: int, batch: int):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    import rllib_adaps
    from rllib_adaps.identity import IdentityResult

    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [agents // types] * types})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=batch, minibatch_size=batch, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=0)
    )
    if method == "plain":
        config.multi_agent(policies={"p"}, policy_mapping_fn=lambda agent_id, episode, **kw: "p")
        config.rl_module(rl_module_spec=RLModuleSpec())
        return config.build_algo()
    options = {"pretrain_env_steps": 10**12, "num_clusters": types} if method in ("seps", "adaps") else {}
    algo = rllib_adaps.configure_sharing(config, method, **options).build_algo()
    if options:  # install the true types' clustering directly: what a fit would install
        callback = next(c for c in algo.callbacks if isinstance(c, rllib_adaps.SharingCallback))
        labels = np.repeat(np.arange(types), agents // types)
        centres = np.random.default_rng(0).normal(size=(types, 10))
        fit = IdentityResult(identities=centres[labels], labels=labels, centres=centres, num_clusters=types)
        facts = callback._facts(algo)
        callback._install(algo, callback.method.plan_install(fit, facts["agent_slice"], facts["hidden_sizes"]))
    return algo


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=120)
    parser.add_argument("--types", type=int, default=3)
    parser.add_argument("--batch", type=int, default=400, help="train batch in env steps")
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--iters", type=int, default=2, help="iterations per configuration per round")
    parser.add_argument("--methods", default="plain,fups,nops,seps,adaps")
    args = parser.parse_args()

    import ray

    import rllib_adaps

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    methods = args.methods.split(",")
    algos = {m: build(m, args.agents, args.types, args.batch) for m in methods}
    times = {m: [] for m in methods}
    for algo in algos.values():
        algo.train()  # warm-up
    for _ in range(args.rounds):
        for m, algo in algos.items():
            before = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            start = time.perf_counter()
            for _ in range(args.iters):
                after = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            times[m].append((time.perf_counter() - start) / ((after - before) * args.agents) * 1e6)
    for algo in algos.values():
        algo.stop()

    print(f"BPS, {args.agents} agents of {args.types} types, batch {args.batch} env steps, 1 epoch, one minibatch; "
          f"{args.rounds} rounds x {args.iters} iterations per configuration, taking turns")
    print(f"{'config':8} {'us/agent step (median)':>24} {'min':>8} {'max':>8} {'FuPS time / this':>18}")
    fups = statistics.median(times["fups"]) if "fups" in times else float("nan")
    for m in methods:
        med = statistics.median(times[m])
        print(f"{m:8} {med:24.1f} {min(times[m]):8.1f} {max(times[m]):8.1f} {fups / med:18.3f}")
    if "plain" in times and "fups" in times:
        print(f"FuPS (plugin) relative to plain RLlib, plain time / FuPS time: {statistics.median(times['plain']) / fups:.3f}")


if __name__ == "__main__":
    main()
