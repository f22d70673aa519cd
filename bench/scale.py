"""How cost grows with the number of agents: BPS with 15 to 600 agents, 3 and 5 types.

    python bench/scale.py --out docs/results/scale > docs/results/scale/scale.txt
    python bench/scale.py --agents 30,120,600 --types 3 --out docs/results/scale_600   # issue 25's sizes
    python bench/scale.py --agents 30,120,600 --types 3 --env-runners 1 ...           # EnvRunner memory apart

For every method and size, a fresh Python process (so that peak memory is its own) builds PPO
on BPS, trains one warm-up iteration (AdaPS/SePS pre-train and cluster in it, K fixed to the
number of types) and one more, then times whole iterations (sampling and learning) until at
least ``--seconds`` have passed. Reported:
trainable parameters (all modules on the Learner), peak resident memory of the process
(driver = EnvRunner + Learner; includes Ray's driver overhead, the same for all) and its growth
over the same process's memory after ``ray.init``, env steps/s and agent steps/s. With
``--env-runners 1`` the EnvRunner is a Ray actor and its own peak memory is reported
(``runner_peak_rss_mb``; with 0 it is the driver's). ``optimizer_ms``: the Learner's optimizer
step (torch's fused Adam, ``rllib_adaps.rllib.shims`` note 7), against ``fused_adam_ms``: the
same Adam on one tensor of the same number of parameters, the floor for NoPS's 600 slices.
Outputs ``scale.csv`` and ``scale.png`` (parameters, memory and time per agent step against N).
"""

from __future__ import annotations

import argparse
import csv
import json
import resource
import subprocess
import sys
import time
from pathlib import Path


METHODS = ("nops", "fups", "fups_id", "seps", "snp", "adaps")
FIELDS = ["agents", "types", "method", "parameters", "peak_rss_mb", "rss_growth_mb", "runner_peak_rss_mb", "env_steps_per_s",
          "agent_steps_per_s", "us_per_agent_step", "optimizer_ms", "fused_adam_ms", "build_s"]


def current_rss() -> int:
    """Resident memory of this process in bytes (Linux)."""
    import os

    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def fused_adam_ms(parameters: int, steps: int = 20) -> float:
    """One fused Adam step over ``parameters`` numbers in one tensor, in milliseconds."""
    import torch

    weight = torch.nn.Parameter(torch.zeros(parameters))
    weight.grad = torch.randn(parameters)
    optimizer = torch.optim.Adam([weight], fused=True)
    optimizer.step()
    start = time.perf_counter()
    for _ in range(steps):
        optimizer.step()
    return (time.perf_counter() - start) / steps * 1e3


def measure(method: str, agents: int, types: int, min_seconds: float, batch: int, env_runners: int = 0) -> dict:
    """One measurement, in this (fresh) process."""
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps
    from comparison import trainable_parameters

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    baseline = current_rss()
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [agents // types] * types})
        .env_runners(num_env_runners=env_runners, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=batch, minibatch_size=batch // 2, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=0)
    )
    options = {"shared_training_env_steps": 1, "identity_env_steps": 200, "num_clusters": types} if method in ("adaps", "seps") else {}
    start = time.perf_counter()
    algo = rllib_adaps.configure_sharing(config, method, **options).build_algo()
    build = time.perf_counter() - start
    optimizer_seconds = []
    try:
        algo.train()  # warm-up; AdaPS/SePS cluster at its end
        before = int(algo.train()["env_runners"]["num_env_steps_sampled_lifetime"])
        learner = algo.learner_group._learner
        for optimizer in learner._named_optimizers.values():
            step = optimizer.step

            def timed(*a, _step=step, **k):
                t = time.perf_counter()
                out = _step(*a, **k)
                optimizer_seconds.append(time.perf_counter() - t)
                return out

            optimizer.step = timed
        start = time.perf_counter()
        while time.perf_counter() - start < min_seconds:
            result = algo.train()
            after = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
        seconds = time.perf_counter() - start
        params = trainable_parameters(result)
        runner_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        if env_runners:
            runner_peak = max(algo.env_runner_group.foreach_env_runner(
                lambda r: __import__("resource").getrusage(__import__("resource").RUSAGE_SELF).ru_maxrss * 1024,
                local_env_runner=False))
    finally:
        algo.stop()
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # Linux: KiB
    env_rate = (after - before) / seconds
    return {
        "agents": agents, "types": types, "method": method, "parameters": params,
        "peak_rss_mb": round(peak / 2**20), "rss_growth_mb": round((peak - baseline) / 2**20),
        "env_steps_per_s": round(env_rate, 1), "agent_steps_per_s": round(env_rate * agents),
        "us_per_agent_step": round(1e6 / (env_rate * agents), 1), "build_s": round(build, 1),
        "runner_peak_rss_mb": round(runner_peak / 2**20),
        "optimizer_ms": round(1e3 * sorted(optimizer_seconds)[len(optimizer_seconds) // 2], 2) if optimizer_seconds else None,
        "fused_adam_ms": round(fused_adam_ms(params), 2),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4.2))
    panels = [("parameters", "trainable parameters", True), ("rss_growth_mb", "peak memory growth (MB)", False),
              ("us_per_agent_step", "microseconds per agent step", False)]
    for ax, (field, label, log) in zip(axes, panels):
        for types, style in ((3, "-"), (5, "--")):
            for i, method in enumerate(METHODS):
                points = sorted((r["agents"], r[field]) for r in rows if r["method"] == method and r["types"] == types)
                if points:
                    x, y = zip(*points)
                    ax.plot(x, y, style, marker="o", color=f"C{i}", label=f"{method}" if types == 3 else None)
        ax.set_xscale("log", base=2)
        if log:
            ax.set_yscale("log")
        ax.set_xlabel("agents (solid: 3 types, dashed: 5 types)")
        ax.set_ylabel(label)
        ax.legend(fontsize=7)
    fig.suptitle("BPS: cost against the number of agents", fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/results/scale")
    parser.add_argument("--agents", default="15,30,60,120")
    parser.add_argument("--types", default="3,5")
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seconds", type=float, default=10, help="time whole iterations for at least this long")
    parser.add_argument("--batch", type=int, default=400, help="train batch (env steps)")
    parser.add_argument("--env-runners", type=int, default=0, help="remote EnvRunners (0: the driver samples)")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # "method,agents,types": measure in this process
    args = parser.parse_args()
    if args.one:
        method, agents, types = args.one.split(",")
        print(json.dumps(measure(method, int(agents), int(types), args.seconds, args.batch, args.env_runners)))
        return

    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    print(" ".join(f"{f:>17s}" for f in FIELDS), flush=True)
    for types in map(int, args.types.split(",")):
        for agents in map(int, args.agents.split(",")):
            for method in args.methods.split(","):
                cmd = [sys.executable, __file__, "--one", f"{method},{agents},{types}", "--seconds", str(args.seconds), "--batch", str(args.batch),
                       "--env-runners", str(args.env_runners)]
                done = subprocess.run(cmd, capture_output=True, text=True)
                lines = [line for line in done.stdout.splitlines() if line.startswith("{")]
                if done.returncode or not lines:
                    print(f"{method} {agents} agents {types} types FAILED:\n{done.stderr[-2000:]}", flush=True)
                    continue
                row = json.loads(lines[-1])
                rows.append(row)
                print(" ".join(f"{row[f]!s:>17s}" for f in FIELDS), flush=True)
                with open(out / "scale.csv", "w", newline="") as f:
                    writer = csv.DictWriter(f, fieldnames=FIELDS)
                    writer.writeheader()
                    writer.writerows(rows)
    plot(rows, out / "scale.png")
    print(f"\nParameters and time per agent step relative to the smallest N ({min(r['agents'] for r in rows)} agents, same types):")
    for types in sorted({r["types"] for r in rows}):
        for method in METHODS:
            series = sorted((r["agents"], r["parameters"], r["us_per_agent_step"]) for r in rows if r["method"] == method and r["types"] == types)
            if series:
                params = " ".join(f"{p / series[0][1]:.2f}" for _, p, _ in series)
                times = " ".join(f"{t / series[0][2]:.2f}" for _, _, t in series)
                print(f"  {types} types {method:8s} params x{params:<28s} time/agent-step x{times}")
    print(f"wrote {out / 'scale.csv'} and {out / 'scale.png'}")


if __name__ == "__main__":
    main()
