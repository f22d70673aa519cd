"""The whole identity step (collection, VAE, K selection, install) against the number of agents.

    python bench/identity_scale.py > docs/results/identity_scale.txt

BPS with three types of equal size, AdaPS with PPO on the fast path (one local EnvRunner,
4 env copies), K chosen automatically. The first ``train()`` collects ``identity_env_steps``
env steps with the initial policy, fits the VAE, chooses K, and installs the masks everywhere;
the times are the callback's own (``identity_pretraining/*_seconds``). Each size runs in a
fresh process. ``--env-steps`` is stated in the output: at hundreds of agents a few hundred
env steps already give every agent hundreds of transitions (500: ARI 1.0 at 30 agents offline).
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys


def measure(agents: int, env_steps: int, seed: int) -> dict:
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [agents // 3] * 3})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=seed)
    )
    algo = rllib_adaps.configure_sharing(config, "adaps", identity_env_steps=env_steps).build_algo()
    try:
        summary = algo.train()["identity_pretraining"]
    finally:
        algo.stop()
        ray.shutdown()
    total = summary["collect_seconds"] + summary["fit_seconds"] + summary["install_seconds"]
    return {"agents": agents, "seed": seed, "env_steps": env_steps, "transitions": summary["num_transitions"],
            "collect_s": round(summary["collect_seconds"], 2), "fit_s": round(summary["fit_seconds"], 2),
            "install_s": round(summary["install_seconds"], 2), "total_s": round(total, 2),
            "K": int(summary["num_clusters"]), "ARI": round(summary["adjusted_rand_index"], 3)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", default="30,120,300,600")
    parser.add_argument("--env-steps", type=int, default=500)
    parser.add_argument("--seeds", default="0,1")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "agents,seed": measure in this process
    args = parser.parse_args()
    if args.one:
        agents, seed = map(int, args.one.split(","))
        print(json.dumps(measure(agents, args.env_steps, seed)))
        return
    print(f"# python bench/identity_scale.py {' '.join(sys.argv[1:])}".rstrip())
    print(f"# BPS, 3 equal types, AdaPS + PPO, fast path, 4 env copies, {args.env_steps} env steps collected, K automatic")
    fields = ["agents", "seed", "transitions", "collect_s", "fit_s", "install_s", "total_s", "K", "ARI"]
    print(" ".join(f"{f:>11s}" for f in fields), flush=True)
    for agents in map(int, args.agents.split(",")):
        for seed in map(int, args.seeds.split(",")):
            done = subprocess.run([sys.executable, __file__, "--one", f"{agents},{seed}", "--env-steps", str(args.env_steps)],
                                  capture_output=True, text=True)
            lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
            if done.returncode or not lines:
                print(f"{agents} agents seed {seed} FAILED:\n{done.stderr[-2000:]}", flush=True)
                continue
            row = json.loads(lines[-1])
            print(" ".join(f"{row[f]!s:>11s}" for f in fields), flush=True)


if __name__ == "__main__":
    main()
