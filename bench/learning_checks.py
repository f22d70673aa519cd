"""Learning checks for continuous actions, recurrent policies and the centralised critic.

Each check trains with settings fixed here, before any run, the same for every variant it
compares, for 3 seeds, and scores every run by test returns from its checkpoints: before
training and at the end, 20 episodes each, sampled and greedy (``evaluate_modes``). Runs
append one JSON line each to ``docs/results/learning_checks.jsonl`` and are skipped when
already there, so the script resumes where it stopped.

    python bench/learning_checks.py                 # every check
    python bench/learning_checks.py spread_continuous
    python bench/learning_checks.py --report        # the table only (docs/results/learning_checks.md)

Checks:
- ``spread_continuous``: mpe2 ``simple_spread_v3`` (3 agents, continuous actions), AdaPS,
  NoPS and FuPS.
- ``lbf_partial_sight``: LBF with ``sight`` 2 (agents see 2 cells around them), FuPS with an
  LSTM against FuPS with the MLP, both on RLlib's multi-agent path (the recurrent one's path).
- ``central_critic_bps`` / ``central_critic_crware``: FuPS with a critic that reads every
  agent's observation (``critic_input="joint_observations"``) against per-agent critics.
"""

from __future__ import annotations

import json
import logging
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"
RESULTS = OUT / "learning_checks.jsonl"
SEEDS = (0, 1, 2)
EVAL_EPISODES = 20

#: PPO as in the tuned examples, smaller batches for the smaller budgets.
PPO = {"lr": 3e-4, "gamma": 0.99, "entropy_coeff": 0.01, "vf_loss_coeff": 0.5, "num_epochs": 4,
       "train_batch_size_per_learner": 1000, "minibatch_size": 500}
MLP = {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu", "vf_share_layers": False}
LSTM = {**MLP, "use_lstm": True, "lstm_cell_size": 64, "max_seq_len": 20}

#: check -> env, env_config, budget in env steps, and variants (name -> method, model_config, options).
CHECKS = {
    "spread_continuous": {
        "env": "spread_continuous", "env_config": {}, "env_steps": 60_000,
        "variants": {m: (m, MLP, {}) for m in ("adaps", "nops", "fups")},
    },
    "lbf_partial_sight": {
        "env": "lbf", "env_config": {"levels": [1, 1, 2, 2], "grid_size": 6, "foods": 2, "sight": 2, "max_steps": 50},
        "env_steps": 100_000,
        "variants": {"mlp": ("fups", MLP, {"fast_path": False}), "lstm": ("fups", LSTM, {})},
    },
    "central_critic_bps": {
        "env": "bps", "env_config": {"preset": "v1"}, "env_steps": 100_000,
        "variants": {"independent": ("fups", MLP, {}), "central": ("fups", {**MLP, "critic_input": "joint_observations"}, {})},
    },
    "central_critic_crware": {
        "env": "crware", "env_config": {"task": "tiny-4ag", "max_steps": 500}, "env_steps": 200_000,
        "variants": {"independent": ("fups", MLP, {}), "central": ("fups", {**MLP, "critic_input": "joint_observations"}, {})},
    },
}
#: AdaPS's options in every check that runs it (the tuned examples' pre-training, scaled down).
ADAPS = {"identity_env_steps": 3_000, "shared_training_env_steps": 5_000}


def register_third_party_envs() -> None:
    from mpe2 import simple_spread_v3
    from ray.tune.registry import register_env

    from rllib_adaps.envs.rllib_env import OrderedParallelEnv

    register_env("spread_continuous", lambda cfg: OrderedParallelEnv(
        simple_spread_v3.parallel_env(N=3, continuous_actions=True, max_cycles=25)))


def run(check: str, variant: str, seed: int) -> dict:
    import ray
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps
    from rllib_adaps.app.evaluation import evaluate_modes

    spec = CHECKS[check]
    method, model, extra = spec["variants"][variant]
    options = {**(ADAPS if method == "adaps" else {}), **extra}
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    register_third_party_envs()
    config = (PPOConfig().environment(spec["env"], env_config=spec["env_config"])
              .env_runners(num_env_runners=1, num_envs_per_env_runner=4)
              .training(**PPO).rl_module(model_config=model).debugging(seed=seed))
    config = rllib_adaps.configure_sharing(config, method, **options)
    algo = config.build_algo()
    start, curve = time.perf_counter(), []
    try:
        with tempfile.TemporaryDirectory() as tmp:
            before = evaluate_modes(algo.save_to_path(f"{tmp}/start"), episodes=EVAL_EPISODES)
            steps = 0
            while steps < spec["env_steps"]:
                result = algo.train()
                steps = result["env_runners"]["num_env_steps_sampled_lifetime"]
                curve.append((steps, result["env_runners"].get("episode_return_mean")))
            after = evaluate_modes(algo.save_to_path(f"{tmp}/end"), episodes=EVAL_EPISODES)
    finally:
        algo.stop()
        ray.shutdown()
    return {"check": check, "variant": variant, "method": method, "seed": seed, "env_steps": steps,
            "seconds": round(time.perf_counter() - start, 1),
            "test_before": {m: round(r["mean_return"], 3) for m, r in before.items()},
            "test_after": {m: round(r["mean_return"], 3) for m, r in after.items()},
            "training_curve": [(s, None if r is None else round(r, 3)) for s, r in curve]}


def done_runs() -> set:
    if not RESULTS.exists():
        return set()
    return {(r["check"], r["variant"], r["seed"]) for r in map(json.loads, RESULTS.read_text().splitlines())}


def report() -> str:
    rows = [json.loads(line) for line in RESULTS.read_text().splitlines()] if RESULTS.exists() else []
    lines = ["Test returns (sum over agents per episode, mean of 20 episodes), before training and at the end;",
             "mean over seeds [min, max]. Settings: bench/learning_checks.py.", "",
             "| check | variant | env steps | seeds | greedy before | greedy after | sampled before | sampled after | s/run |",
             "|---|---|---|---|---|---|---|---|---|"]
    for check in CHECKS:
        for variant in CHECKS[check]["variants"]:
            runs = [r for r in rows if r["check"] == check and r["variant"] == variant]
            if not runs:
                continue

            def cell(when, mode):
                values = np.array([r[when][mode] for r in runs])
                return f"{values.mean():.2f} [{values.min():.2f}, {values.max():.2f}]"

            lines.append(f"| {check} | {variant} | {int(runs[0]['env_steps'])} | {len(runs)} | {cell('test_before', 'greedy')} | "
                         f"{cell('test_after', 'greedy')} | {cell('test_before', 'sampled')} | {cell('test_after', 'sampled')} | "
                         f"{np.mean([r['seconds'] for r in runs]):.0f} |")
    return "\n".join(lines) + "\n"


def main(argv) -> None:
    logging.basicConfig(level=logging.WARNING)
    if "--report" not in argv:
        checks = [a for a in argv if a in CHECKS] or list(CHECKS)
        for check in checks:
            for variant in CHECKS[check]["variants"]:
                for seed in SEEDS:
                    if (check, variant, seed) in done_runs():
                        continue
                    row = run(check, variant, seed)
                    with RESULTS.open("a") as f:
                        f.write(json.dumps(row) + "\n")
                    print(json.dumps({k: v for k, v in row.items() if k != "training_curve"}), flush=True)
    table = report()
    (OUT / "learning_checks.md").write_text(table)
    print(table)


if __name__ == "__main__":
    main(sys.argv[1:])
