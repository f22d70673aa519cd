"""Training throughput of each sharing method relative to FuPS, measured side by side.

Every method trains the same env with the same PPO config; whole iterations (sampling and
learning) are timed, round-robin over the methods so that machine noise hits all of them
alike. AdaPS and SePS pre-train first (excluded from the timing). "rllib_default" is plain
RLlib PPO with its default module shared by all agents (no agent-index connector), to show
what the plugin's own plumbing costs. Also times identity pre-training itself (VAE, k-means,
masks) on 50,000 real transitions of 30 agents.

    python bench/sharing_throughput.py            # BPS v2 (30 agents), 3 rounds
    python bench/sharing_throughput.py --rounds 5 --iters 2
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import ray
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

import rllib_adaps
from rllib_adaps.envs import make_parallel_env
from rllib_adaps.identity import fit_identities
from rllib_adaps.masks import cluster_masks

TARGETS = {"adaps": 0.95, "snp": 0.95, "fups_id": 0.95, "seps": 0.90}


def base_config(args) -> PPOConfig:
    return (
        PPOConfig()
        .environment("bps", env_config={"preset": args.preset})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=args.envs)
        .training(train_batch_size_per_learner=args.batch, minibatch_size=args.batch // 2, num_epochs=2)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
        .debugging(seed=0)
    )


def build(method: str, args):
    config = base_config(args)
    if method == "rllib_default":
        agents = make_parallel_env("bps", {"preset": args.preset}).possible_agents
        config = config.multi_agent(policies={"shared"}, policy_mapping_fn=lambda aid, *a, **k: "shared")
        config = config.rl_module(rl_module_spec=MultiRLModuleSpec(rl_module_specs={"shared": RLModuleSpec()}))
        assert agents
        return config.build_algo()
    options = {"pretrain_env_steps": 1, "identity_env_steps": 500, "num_clusters": 3} if method in ("adaps", "seps") else {}
    algo = rllib_adaps.configure_sharing(config, method, **options).build_algo()
    algo.train()  # warm-up (and pre-training for AdaPS/SePS: fitted after this iteration)
    return algo


def steps(result) -> int:
    return int(result["env_runners"]["num_env_steps_sampled_lifetime"])


def time_methods(methods, args) -> dict[str, float]:
    algos = {m: build(m, args) for m in methods}
    rates: dict[str, list[float]] = {m: [] for m in methods}
    try:
        for algo in algos.values():
            algo.train()
        for _ in range(args.rounds):
            for method, algo in algos.items():
                before = steps(algo.train())
                start = time.perf_counter()
                for _ in range(args.iters):
                    after = steps(algo.train())
                rates[method].append((after - before) / (time.perf_counter() - start))
    finally:
        for algo in algos.values():
            algo.stop()
    return {m: float(np.median(r)) for m, r in rates.items()}


def time_pretraining(num_transitions: int) -> tuple[float, float, int]:
    """Seconds for fit_identities (VAE + k-means, K chosen by Davies-Bouldin) and for masks."""
    env = make_parallel_env("bps", {"preset": "v2"})
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    cols = {k: [] for k in ("i", "o", "a", "n", "r")}
    while len(cols["i"]) * 30 < num_transitions:
        actions = {a: int(rng.integers(5)) for a in env.agents}
        nxt, rew, term, trunc, _ = env.step(actions)
        cols["i"].append(np.arange(30))
        cols["o"].append(np.stack([obs[a] for a in env.possible_agents]))
        cols["a"].append(np.array([actions[a] for a in env.possible_agents]))
        cols["n"].append(np.stack([nxt[a] for a in env.possible_agents]))
        cols["r"].append(np.array([rew[a] for a in env.possible_agents]))
        obs = nxt if not any(trunc.values()) else env.reset()[0]
    data = [np.concatenate(cols[k])[:num_transitions] for k in ("i", "o", "a", "n", "r")]
    start = time.perf_counter()
    result = fit_identities(*data, num_agents=30, num_actions=5)
    fit = time.perf_counter() - start
    start = time.perf_counter()
    cluster_masks(result.centres, [64, 64], 0.2, 0)
    return fit, time.perf_counter() - start, result.num_clusters


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--preset", default="v2")
    parser.add_argument("--envs", type=int, default=8, help="envs per EnvRunner")
    parser.add_argument("--batch", type=int, default=4000, help="train batch (agent steps)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--iters", type=int, default=2, help="timed iterations per round")
    parser.add_argument("--transitions", type=int, default=50_000)
    parser.add_argument("--skip-training", action="store_true")
    args = parser.parse_args()

    fit, masks, k = time_pretraining(args.transitions)
    print(f"identity pre-training, 30 agents, {args.transitions} transitions: fit (VAE + k-means, K auto={k}) "
          f"{fit:.2f} s, masks {masks * 1000:.1f} ms; total {fit + masks:.2f} s (target < 10 s: {'PASS' if fit + masks < 10 else 'FAIL'})")
    if args.skip_training:
        return
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    methods = ["fups", "adaps", "snp", "fups_id", "seps", "nops", "rllib_default"]
    rates = time_methods(methods, args)
    print(f"\nBPS {args.preset}, PPO, {args.envs} envs on the local EnvRunner, batch {args.batch}, "
          f"median of {args.rounds} rounds x {args.iters} iterations")
    print(f"{'method':<14} {'env steps/s':>12} {'x FuPS':>8} {'target':>8}  result")
    for method in methods:
        ratio = rates[method] / rates["fups"]
        target = TARGETS.get(method)
        verdict = "" if target is None else ("PASS" if ratio >= target else "FAIL")
        print(f"{method:<14} {rates[method]:>12,.0f} {ratio:>8.2f} {'>= ' + str(target) if target else '':>8}  {verdict}")


if __name__ == "__main__":
    main()
