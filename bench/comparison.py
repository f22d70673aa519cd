"""Run several sharing methods and seeds on one scenario; write curves, sizes and plots.

Used by ``examples/compare_methods.py`` and the benchmarks under ``bench/`` (a bench helper,
kept out of the package so that nothing there imports matplotlib). Runs are
sequential (one Ray training at a time). Outputs in ``out_dir``: ``curves.csv`` (one row per
iteration), ``sizes.csv`` (trainable parameters per method), ``learning_curves.png`` (mean and
min-max band over seeds, as in the AdaPS paper's Figure 3) and ``model_size.png`` (relative
trainable size, as in its Figure 4).
"""

from __future__ import annotations

import csv
import time
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Optional

import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

from rllib_adaps.rllib.callback import RESULT_KEY, SHARING_KEY
from rllib_adaps.rllib.configure import configure_sharing

CURVE_FIELDS = ["scenario", "method", "seed", "iteration", "env_steps", "episode_return_mean", "seconds"]


def trainable_parameters(result: dict) -> int:
    """Trainable parameters of the slices agents use (SePS: K x FuPS, not its allocated bound)."""
    return int(result[SHARING_KEY]["parameters_in_use"])


def run_one(
    base_config: AlgorithmConfig,
    method: str,
    seed: int,
    env_steps: int,
    options: Optional[Dict[str, Any]] = None,
    scenario: str = "",
    on_iteration: Optional[Callable[[dict], None]] = None,
) -> Dict[str, Any]:
    """Trains ``method`` with ``seed`` until ``env_steps`` env steps; returns rows and size."""
    config = base_config.copy(copy_frozen=False).debugging(seed=seed)
    config = configure_sharing(config, method, **(options or {}))
    algo = config.build_algo()
    rows: List[dict] = []
    summary: Dict[str, Any] = {}
    start = time.perf_counter()
    try:
        steps = 0
        while steps < env_steps:
            result = algo.train()
            steps = int(result["env_runners"]["num_env_steps_sampled_lifetime"])
            row = {
                "scenario": scenario,
                "method": method,
                "seed": seed,
                "iteration": int(result["training_iteration"]),
                "env_steps": steps,
                "episode_return_mean": float(result["env_runners"].get("episode_return_mean", np.nan)),
                "seconds": round(time.perf_counter() - start, 2),
            }
            rows.append(row)
            summary = result.get(RESULT_KEY, summary)
            if on_iteration:
                on_iteration(row)
        params = trainable_parameters(result)
    finally:
        algo.stop()
    return {"rows": rows, "parameters": params, "pretraining": summary}


def write_csv(path: Path, rows: Iterable[dict], fields: List[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
        writer.writeheader()
        writer.writerows(rows)


def curve_on_grid(rows: List[dict], grid: np.ndarray) -> np.ndarray:
    """Mean returns interpolated onto a common env-step grid (NaN before the first episode)."""
    points = [(r["env_steps"], r["episode_return_mean"]) for r in rows if np.isfinite(r["episode_return_mean"])]
    if not points:
        return np.full(len(grid), np.nan)
    x, y = map(np.asarray, zip(*points))
    out = np.interp(grid, x, y)
    out[grid < x[0]] = np.nan
    return out


def draw_learning_curves(ax, rows: List[dict], grid: np.ndarray, alpha: float = 0.2) -> None:
    """Per method: mean over seeds and the min-max band, on ``grid`` (the paper's Figure 3)."""
    import warnings

    for method in dict.fromkeys(r["method"] for r in rows):
        seeds = sorted({r["seed"] for r in rows if r["method"] == method})
        curves = np.stack([curve_on_grid([r for r in rows if r["method"] == method and r["seed"] == s], grid) for s in seeds])
        with np.errstate(all="ignore"), warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN columns before the first episode
            mean, low, high = np.nanmean(curves, axis=0), np.nanmin(curves, axis=0), np.nanmax(curves, axis=0)
        line, = ax.plot(grid, mean, label=method)
        ax.fill_between(grid, low, high, color=line.get_color(), alpha=alpha)
    ax.set_xlabel("env steps")
    ax.set_ylabel("mean episode return")


def plot_learning_curves(rows: List[dict], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    draw_learning_curves(ax, rows, np.linspace(0, max(r["env_steps"] for r in rows), 100))
    ax.set_title(title, fontsize=10)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_model_sizes(sizes: Dict[str, int], path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    reference = sizes.get("fups") or min(sizes.values())
    methods = list(sizes)
    relative = [sizes[m] / reference for m in methods]
    fig, ax = plt.subplots(figsize=(6, 4))
    bars = ax.bar(methods, relative, color="tab:blue")
    for bar, value in zip(bars, relative):
        ax.annotate(f"{value:.2g}x", (bar.get_x() + bar.get_width() / 2, value), ha="center", va="bottom", fontsize=8)
    ax.set_ylabel("trainable parameters relative to FuPS")
    ax.set_title(title, fontsize=10)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def compare(
    base_config: AlgorithmConfig,
    methods: Iterable[str],
    seeds: Iterable[int],
    env_steps: int,
    out_dir: str | Path,
    scenario: str,
    options: Optional[Dict[str, Dict[str, Any]]] = None,
    log: Callable[[str], None] = print,
) -> Dict[str, Any]:
    """Runs every method x seed, writes CSVs and plots into ``out_dir``; returns a summary."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    rows: List[dict] = []
    sizes: Dict[str, int] = {}
    pretraining: List[dict] = []
    for method in methods:
        for seed in seeds:
            log(f"{scenario}: {method} seed {seed} ({env_steps} env steps)")
            run = run_one(base_config, method, seed, env_steps, (options or {}).get(method), scenario)
            rows.extend(run["rows"])
            sizes[method] = run["parameters"]
            if run["pretraining"].get("done"):
                pretraining.append({"scenario": scenario, "method": method, "seed": seed, **{
                    k: run["pretraining"].get(k) for k in ("num_clusters", "adjusted_rand_index", "cluster_sizes", "env_steps_at_fit")}})
            write_csv(out / "curves.csv", rows, CURVE_FIELDS)
    write_csv(out / "sizes.csv", [{"scenario": scenario, "method": m, "parameters": p, "relative_to_fups": p / sizes.get("fups", p)} for m, p in sizes.items()],
              ["scenario", "method", "parameters", "relative_to_fups"])
    if pretraining:
        write_csv(out / "clustering.csv", pretraining, ["scenario", "method", "seed", "num_clusters", "adjusted_rand_index", "cluster_sizes", "env_steps_at_fit"])
    plot_learning_curves(rows, out / "learning_curves.png", scenario)
    plot_model_sizes(sizes, out / "model_size.png", f"{scenario}: relative trainable model size")
    return {"rows": rows, "sizes": sizes, "pretraining": pretraining}
