"""Learning comparison of the six sharing methods on the papers' four scenarios.

    nohup python bench/learning_comparison.py --out docs/results/comparison > comparison.log 2>&1 &

Every method trains with PPO (the tuned examples' settings: MLP 64x64, lr 3e-4, entropy 0.01,
4 epochs) for the same env-step budget per scenario, with seeds 0, 1, 2. Runs go seed-major
(all scenarios and methods for seed 0, then seed 1, ...) so that a cut-off run still covers every
method. Each finished run is saved as ``runs/<scenario>/<method>_s<seed>.json`` and skipped on a
re-run, so the command resumes. ``--aggregate-only`` rebuilds the outputs from saved runs.

Outputs in ``--out``: ``curves.csv`` (every iteration of every run), ``final_returns.csv`` and
``final_returns.md`` (mean +- std over seeds of each run's final return = mean of its last 3
iterations' smoothed ``episode_return_mean``), ``clustering.csv`` (K and adjusted Rand index of
SePS/AdaPS clusters against the env's true agent types), ``model_sizes.csv``,
``learning_curves.png`` (mean and min-max band over seeds, as in the AdaPS paper's Figure 3) and
``model_size.png`` (trainable parameters relative to FuPS, as in its Figure 4).

The budgets fit this 2-core machine in about 1.5 hours in total; they are far below the papers'
(millions of env steps), so these are early-training comparisons.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np

SCENARIOS = {
    "bps_v1": {
        "title": "BPS v1 (15 agents, 3 types)",
        "env": "bps",
        "env_config": {"preset": "v1"},
        "env_steps": 30_000,
        "pretraining": {"shared_training_env_steps": 6_000, "identity_env_steps": 1_000},
    },
    "bps_v2": {
        "title": "BPS v2 (30 agents, 3 x 10)",
        "env": "bps",
        "env_config": {"preset": "v2"},
        "env_steps": 16_000,
        "pretraining": {"shared_training_env_steps": 4_000, "identity_env_steps": 1_000},
    },
    "lbf": {
        "title": "LBF 8x8, levels 1,1,2,2,3,3, 3 foods",
        "env": "lbf",
        "env_config": {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50},
        "env_steps": 40_000,
        "pretraining": {"shared_training_env_steps": 8_000, "identity_env_steps": 2_000},
    },
    "crware": {
        "title": "C-RWARE tiny-4ag, 2 colours",
        "env": "crware",
        "env_config": {"task": "tiny-4ag", "max_steps": 500},
        "env_steps": 50_000,
        "pretraining": {"shared_training_env_steps": 10_000, "identity_env_steps": 2_000},
    },
}

METHODS = ("nops", "fups", "fups_id", "seps", "snp", "adaps")
#: Method options besides pre-training (the tuned examples' values).
METHOD_OPTIONS = {
    "snp": {"pruning_rate": 0.5, "mask_seed": 0},
    "seps": {"num_clusters": None, "z_dim": 10, "kl_weight": 1e-4},
    "adaps": {"num_clusters": None, "z_dim": 10, "kl_weight": 1e-4, "mask_threshold": 0.2, "mask_seed": 0},
}
FINAL_ITERATIONS = 3


def base_config(scenario: dict):
    from ray.rllib.algorithms.ppo import PPOConfig

    return (
        PPOConfig()
        .environment(scenario["env"], env_config=scenario["env_config"])
        .env_runners(num_env_runners=0, num_envs_per_env_runner=8)
        .training(lr=3e-4, gamma=0.99, entropy_coeff=0.01, vf_loss_coeff=0.5, num_epochs=4,
                  train_batch_size_per_learner=2000, minibatch_size=500)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu", "vf_share_layers": False})
    )


def method_options(method: str, scenario: dict) -> dict:
    options = dict(METHOD_OPTIONS.get(method, {}))
    if method in ("seps", "adaps"):
        options.update(scenario["pretraining"])
    return options


def train_and_save(path: Path, scenario: str, method: str, seed: int, env_steps: int, **overrides) -> dict:
    """One run (``rllib_adaps.comparison.run_one``), saved as JSON at ``path``; loaded if it exists."""
    from comparison import run_one

    if path.exists():
        return json.loads(path.read_text())
    options = {**method_options(method, SCENARIOS[scenario]), **overrides}
    start = time.time()
    run = run_one(base_config(SCENARIOS[scenario]), method, seed, env_steps, options, scenario=scenario)
    run["wall_seconds"] = round(time.time() - start, 1)
    run["pretraining"] = {k: v for k, v in run["pretraining"].items() if isinstance(v, (int, float, str, list, bool, type(None)))}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(run))
    return run


def run_all(out: Path, scenarios: list[str], methods: list[str], seeds: list[int], budget_scale: float) -> None:
    import ray

    import rllib_adaps

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rllib_adaps.register_envs()
    for seed in seeds:
        for name in scenarios:
            scenario = SCENARIOS[name]
            for method in methods:
                path = out / "runs" / name / f"{method}_s{seed}.json"
                if path.exists():
                    continue
                steps = int(scenario["env_steps"] * budget_scale)
                print(f"[{time.strftime('%H:%M:%S')}] {name} {method} seed {seed}: {steps} env steps", flush=True)
                run = train_and_save(path, name, method, seed, steps)
                print(f"    done in {run['wall_seconds']} s, last return {run['rows'][-1]['episode_return_mean']:.3f}, "
                      f"params {run['parameters']}, ARI {run['pretraining'].get('adjusted_rand_index')}", flush=True)
    ray.shutdown()


def load_runs(out: Path) -> list[dict]:
    runs = []
    for path in sorted((out / "runs").glob("*/*.json")):
        run = json.loads(path.read_text())
        run["scenario"], (run["method"], seed) = path.parent.name, path.stem.rsplit("_s", 1)
        run["seed"] = int(seed)
        runs.append(run)
    return runs


def final_return(run: dict) -> float:
    values = [r["episode_return_mean"] for r in run["rows"] if np.isfinite(r["episode_return_mean"])]
    return float(np.mean(values[-FINAL_ITERATIONS:])) if values else float("nan")


def aggregate(out: Path) -> None:
    from comparison import CURVE_FIELDS, write_csv

    runs = load_runs(out)
    if not runs:
        raise SystemExit(f"no runs under {out / 'runs'}")
    scenarios = [s for s in SCENARIOS if any(r["scenario"] == s for r in runs)]
    methods = [m for m in METHODS if any(r["method"] == m for r in runs)]
    write_csv(out / "curves.csv", [row for run in runs for row in run["rows"]], CURVE_FIELDS)

    finals, table = [], {}
    for s in scenarios:
        for m in methods:
            values = [final_return(r) for r in runs if r["scenario"] == s and r["method"] == m]
            if values:
                mean, std = float(np.mean(values)), float(np.std(values))
                table[s, m] = (mean, std, len(values))
                finals.append({"scenario": s, "method": m, "seeds": len(values), "final_return_mean": round(mean, 4),
                               "final_return_std": round(std, 4), "env_steps": SCENARIOS[s]["env_steps"]})
    write_csv(out / "final_returns.csv", finals, ["scenario", "method", "seeds", "final_return_mean", "final_return_std", "env_steps"])

    clustering = [
        {"scenario": r["scenario"], "method": r["method"], "seed": r["seed"], **{k: r["pretraining"].get(k) for k in
         ("num_clusters", "adjusted_rand_index", "cluster_sizes", "env_steps_at_fit")}}
        for r in runs if r["pretraining"].get("done")
    ]
    write_csv(out / "clustering.csv", clustering, ["scenario", "method", "seed", "num_clusters", "adjusted_rand_index", "cluster_sizes", "env_steps_at_fit"])

    sizes = []
    for s in scenarios:
        per_method = {m: next(r["parameters"] for r in runs if r["scenario"] == s and r["method"] == m)
                      for m in methods if any(r["scenario"] == s and r["method"] == m for r in runs)}
        fups = per_method.get("fups")
        sizes += [{"scenario": s, "method": m, "parameters": p, "relative_to_fups": round(p / fups, 3) if fups else ""}
                  for m, p in per_method.items()]
    write_csv(out / "model_sizes.csv", sizes, ["scenario", "method", "parameters", "relative_to_fups"])

    write_markdown(out, scenarios, methods, table, clustering, sizes, runs)
    plot_curves(out, scenarios, methods, runs)
    plot_sizes(out, scenarios, methods, sizes)


def write_markdown(out, scenarios, methods, table, clustering, sizes, runs) -> None:
    lines = ["Final return (mean +- std over seeds; each seed's final return is the mean of its last "
             f"{FINAL_ITERATIONS} iterations' smoothed episode return). Best mean per scenario in bold.", "",
             "| method | " + " | ".join(f"{SCENARIOS[s]['title']} ({SCENARIOS[s]['env_steps'] // 1000}k steps)" for s in scenarios) + " |",
             "|---|" + "---|" * len(scenarios)]
    best = {s: max((table[s, m][0] for m in methods if (s, m) in table), default=None) for s in scenarios}
    for m in methods:
        cells = []
        for s in scenarios:
            if (s, m) not in table:
                cells.append("-")
                continue
            mean, std, n = table[s, m]
            cell = f"{mean:.3g} +- {std:.2g}" + ("" if n >= 3 else f" (n={n})")
            cells.append(f"**{cell}**" if mean == best[s] else cell)
        lines.append(f"| {m} | " + " | ".join(cells) + " |")
    lines += ["", "Clusters against the true agent types (adjusted Rand index, K chosen by Davies-Bouldin):", "",
              "| scenario | method | ARI per seed | K per seed |", "|---|---|---|---|"]
    for s in scenarios:
        for m in ("seps", "adaps"):
            rows = sorted((c for c in clustering if c["scenario"] == s and c["method"] == m), key=lambda c: c["seed"])
            if rows:
                aris = ", ".join(f"{c['adjusted_rand_index']:.2f}" for c in rows)
                ks = ", ".join(str(c["num_clusters"]) for c in rows)
                lines.append(f"| {s} | {m} | {aris} | {ks} |")
    lines += ["", "Trainable parameters (relative to FuPS):", "", "| scenario | " + " | ".join(methods) + " |",
              "|---|" + "---|" * len(methods)]
    for s in scenarios:
        row = {r["method"]: r for r in sizes if r["scenario"] == s}
        lines.append(f"| {s} | " + " | ".join(
            f"{row[m]['parameters']:,} ({row[m]['relative_to_fups']}x)" if m in row else "-" for m in methods) + " |")
    wall = sum(r.get("wall_seconds", 0) for r in runs)
    lines += ["", f"{len(runs)} runs, {wall / 60:.0f} minutes of training in all."]
    (out / "final_returns.md").write_text("\n".join(lines) + "\n")


def plot_curves(out, scenarios, methods, runs) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from comparison import draw_learning_curves

    cols = 2
    rows = (len(scenarios) + cols - 1) // cols
    fig, axes = plt.subplots(rows, cols, figsize=(12, 4.2 * rows), squeeze=False)
    for ax, s in zip(axes.flat, scenarios):
        scenario_rows = [row for m in methods for r in runs if r["scenario"] == s and r["method"] == m for row in r["rows"]]
        draw_learning_curves(ax, scenario_rows, np.linspace(0, SCENARIOS[s]["env_steps"], 60), alpha=0.15)
        ax.set_title(SCENARIOS[s]["title"], fontsize=10)
        ax.legend(fontsize=7)
    for ax in list(axes.flat)[len(scenarios):]:
        ax.axis("off")
    fig.tight_layout()
    fig.savefig(out / "learning_curves.png", dpi=100)
    plt.close(fig)


def plot_sizes(out, scenarios, methods, sizes) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(9, 4))
    width = 0.8 / len(methods)
    x = np.arange(len(scenarios))
    for i, m in enumerate(methods):
        values = [next((r["relative_to_fups"] for r in sizes if r["scenario"] == s and r["method"] == m), 0) or 0 for s in scenarios]
        ax.bar(x + i * width, values, width, label=m)
    ax.set_xticks(x + width * (len(methods) - 1) / 2, scenarios)
    ax.set_yscale("log")
    ax.set_ylabel("trainable parameters / FuPS")
    ax.set_title("Relative trainable model size", fontsize=10)
    ax.legend(fontsize=7, ncol=3)
    fig.tight_layout()
    fig.savefig(out / "model_size.png", dpi=100)
    plt.close(fig)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="docs/results/comparison")
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--methods", default=",".join(METHODS))
    parser.add_argument("--seeds", default="0,1,2")
    parser.add_argument("--budget-scale", type=float, default=1.0, help="multiply every scenario's env-step budget")
    parser.add_argument("--aggregate-only", action="store_true")
    args = parser.parse_args()
    scenarios, methods = args.scenarios.split(","), args.methods.split(",")
    for name, valid in ((scenarios, SCENARIOS), (methods, METHODS)):
        unknown = sorted(set(name) - set(valid))
        if unknown:
            parser.error(f"unknown {unknown}; choose from {list(valid)}")
    out = Path(args.out)
    if not args.aggregate_only:
        run_all(out, scenarios, methods, [int(s) for s in args.seeds.split(",")], args.budget_scale)
    aggregate(out)
    print((out / "final_returns.md").read_text())


if __name__ == "__main__":
    main()
