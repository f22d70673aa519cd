"""The campaign's statistics and exports, per scenario and method, from the runs alone.

With rliable (95% stratified bootstrap intervals), into the output folder:
- ``summary.csv``: scenario, method, seeds, env_steps, test_iqm, test_low, test_high (the
  greedy test return at the end), test_sampled_iqm, test_auc_iqm (the greedy test curve's
  normalised area), then iqm, iqm_low, iqm_high, mean, mean_low, mean_high (the final training
  return), ari (mean ARI of the runs that cluster; empty for other methods). Test columns are
  empty for runs without tests (protocol 1);
- ``learning_speed.csv``: scenario, method, seeds, env_steps, auc_iqm, auc_low, auc_high: IQM
  of the return averaged over the whole run (the normalised area under the curve), where final
  returns tie at a ceiling;
- ``probability_of_improvement.csv``: P(method > other) with its interval for every ordered
  pair (AdaPS's rows first), on the final greedy test return (``score`` test) where every run
  of the scenario has tests, else on the final training return;
- ``curves_{scenario}_{algorithm}.png``: IQM of the training return over env steps with interval
  bands; with tests, ``test_curves_...png`` (the greedy test return) and ``profile_...png``
  (rliable's performance profile of the final greedy test return) beside it;
- ``model_size.csv`` / ``model_size.png``: parameters each method's module uses (and allocates),
  per scenario, read from the runs' ``sharing`` results;
- ``marl_eval.json``: every run in marl-eval's JSON layout (environment, task, algorithm, run,
  step: {step_count, return}), to compare with other MARL libraries;
- ``runs.jsonl``: the archive (``results``), rewritten with every finished run.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

from .results import (ARCHIVE, area_under_curve, final_return, final_test_return, has_tests, merge_runs, read_archive, read_runs,
                      test_area_under_curve, write_archive)

CURVE_POINTS = 50  # env-step grid of the curves
TEST_FIELDS = ["test_iqm", "test_low", "test_high", "test_sampled_iqm", "test_auc_iqm", "late_gain", "flattened"]
#: The flattening criterion, fixed before protocol 2's runs: the IQM over seeds of the greedy test
#: return, averaged over the last ``FLAT_POINTS`` tests, differs from its average over the
#: ``FLAT_POINTS`` tests before by at most ``FLAT_SHARE`` of the curve's whole gain (last
#: average minus first test). ``late_gain`` is that difference over the whole gain.
FLAT_POINTS, FLAT_SHARE = 4, 0.05
SUMMARY_FIELDS = ["scenario", "method", "seeds", "env_steps", *TEST_FIELDS, "iqm", "iqm_low", "iqm_high", "mean", "mean_low",
                  "mean_high", "ari"]
SPEED_FIELDS = ["scenario", "method", "seeds", "env_steps", "auc_iqm", "auc_low", "auc_high"]
IMPROVEMENT_FIELDS = ["scenario", "method", "other", "score", "p_better", "low", "high"]
MODEL_SIZE_FIELDS = ["scenario", "method", "parameters_in_use", "parameters_allocated"]


def aggregate(storage: Path, out: Path, reps: int = 2000, min_seeds: int = 5) -> List[dict]:
    """Writes summary.csv, learning_speed.csv, probability_of_improvement.csv, curves, model size
    and marl_eval.json into ``out``.

    A (scenario, algorithm, method) with fewer than ``min_seeds`` finished runs is listed and left
    out (the evidence asks for at least 5 seeds)."""
    from rliable import metrics

    out.mkdir(parents=True, exist_ok=True)
    runs = merge_runs(read_runs(storage), read_archive(out / ARCHIVE))
    write_archive(runs, out / ARCHIVE)  # every finished run, also those of methods with fewer seeds yet
    counts = Counter((r["scenario"], r["algorithm"], r["method"]) for r in runs)
    for (scenario, algorithm, method), n in sorted(counts.items()):
        if n < min_seeds:
            print(f"left out, {n} finished seeds (< {min_seeds}): {scenario}-{method}-{algorithm}")
    runs = [r for r in runs if counts[r["scenario"], r["algorithm"], r["method"]] >= min_seeds]
    if not runs:
        raise SystemExit(f"No finished campaign with at least {min_seeds} seeds under {storage}: run the campaign first.")
    summary, speed, improvement = [], [], []
    for key in sorted({(r["scenario"], r["algorithm"]) for r in runs}):
        scenario, algorithm = key
        by_method = {m: [r for r in runs if (r["scenario"], r["algorithm"], r["method"]) == (scenario, algorithm, m)]
                     for m in sorted({r["method"] for r in runs if (r["scenario"], r["algorithm"]) == key})}
        scores = per_run(by_method, final_return)
        iqm, iqm_ci = interval_estimates(scores, lambda s: np.array([metrics.aggregate_iqm(s)]), reps)
        mean, mean_ci = interval_estimates(scores, lambda s: np.array([metrics.aggregate_mean(s)]), reps)
        auc, auc_ci = interval_estimates(per_run(by_method, area_under_curve), lambda s: np.array([metrics.aggregate_iqm(s)]), reps)
        tests = test_columns(by_method, reps)
        label = scenario if algorithm == "ppo" else f"{scenario} ({algorithm})"
        for m, rs in by_method.items():
            aris = [r["ari"] for r in rs if r["ari"] is not None]
            common = {"scenario": label, "method": m, "seeds": len(rs), "env_steps": int(min(r["steps"][-1] for r in rs))}
            summary.append({
                **common, **tests.get(m, dict.fromkeys(TEST_FIELDS, "")),
                "iqm": round(float(iqm[m][0]), 4), "iqm_low": round(float(iqm_ci[m][0][0]), 4), "iqm_high": round(float(iqm_ci[m][1][0]), 4),
                "mean": round(float(mean[m][0]), 4), "mean_low": round(float(mean_ci[m][0][0]), 4),
                "mean_high": round(float(mean_ci[m][1][0]), 4), "ari": round(float(np.mean(aris)), 3) if aris else "",
            })
            speed.append({**common, "auc_iqm": round(float(auc[m][0]), 4), "auc_low": round(float(auc_ci[m][0][0]), 4),
                          "auc_high": round(float(auc_ci[m][1][0]), 4)})
        tested = all(has_tests(r) for rs in by_method.values() for r in rs)
        score_name, final = ("test", per_run(by_method, final_test_return)) if tested else ("training", scores)
        # every ordered pair (the papers' orderings are not all about AdaPS); AdaPS's first
        pairs = {(x, y): (final[x], final[y]) for x in sorted(final, key=lambda m: m != "adaps") for y in final if y != x}
        if pairs:
            poi, poi_ci = interval_estimates(pairs, metrics.probability_of_improvement, reps)
            for (x, y) in pairs:
                improvement.append({"scenario": label, "method": x, "other": y, "score": score_name,
                                    "p_better": round(float(np.ravel(poi[x, y])[0]), 3),
                                    "low": round(float(np.ravel(poi_ci[x, y])[0]), 3), "high": round(float(np.ravel(poi_ci[x, y])[1]), 3)})
        title = f"{scenario} ({algorithm})"
        plot_curves(by_method, out / f"curves_{scenario}_{algorithm}.png", title, reps)
        if tested:
            test_runs = {m: [{"steps": r["test_steps"], "returns": r["test_greedy"]} for r in rs] for m, rs in by_method.items()}
            plot_curves(test_runs, out / f"test_curves_{scenario}_{algorithm}.png", f"{title}: greedy test return", reps)
            plot_profile(final, out / f"profile_{scenario}_{algorithm}.png", f"{title}: final greedy test return", reps)
    write_csv(out / "summary.csv", summary, SUMMARY_FIELDS)
    write_csv(out / "learning_speed.csv", speed, SPEED_FIELDS)
    model_size(runs, out)
    if improvement:
        write_csv(out / "probability_of_improvement.csv", improvement, IMPROVEMENT_FIELDS)
    (out / "marl_eval.json").write_text(json.dumps(marl_eval(runs), allow_nan=False))
    return summary


def test_columns(by_method: Dict[str, List[dict]], reps: int) -> Dict[str, dict]:
    """IQM and 95% interval of the final greedy test return, the IQM of the sampled one and of
    the test curve's area, for each method whose runs all have tests."""
    from rliable import metrics

    tested = {m: rs for m, rs in by_method.items() if all(has_tests(r) for r in rs)}
    if not tested:
        return {}
    iqm = lambda s: np.array([metrics.aggregate_iqm(s)])  # noqa: E731
    greedy, greedy_ci = interval_estimates(per_run(tested, final_test_return), iqm, reps)
    sampled = {m: metrics.aggregate_iqm(per_run(tested, lambda r: final_test_return(r, "sampled"))[m]) for m in tested}
    auc = {m: metrics.aggregate_iqm(per_run(tested, test_area_under_curve)[m]) for m in tested}
    late = {m: late_gain(rs) for m, rs in tested.items()}
    return {m: {"test_iqm": round(float(greedy[m][0]), 4), "test_low": round(float(greedy_ci[m][0][0]), 4),
                "test_high": round(float(greedy_ci[m][1][0]), 4), "test_sampled_iqm": round(float(sampled[m]), 4),
                "test_auc_iqm": round(float(auc[m]), 4), "late_gain": "" if late[m] is None else round(late[m], 3),
                "flattened": "" if late[m] is None else ("yes" if abs(late[m]) <= FLAT_SHARE else "no")} for m in tested}


def late_gain(runs: List[dict]):
    """The flattening criterion's ratio (``FLAT_POINTS``, ``FLAT_SHARE``) of one method's runs.
    Tests are aligned from the end (every run tests at the same env-step points, but a run
    restored from a checkpoint tests once more where it resumed); None with too few tests."""
    from rliable import metrics

    points = 2 * FLAT_POINTS
    if min(len(r["test_greedy"]) for r in runs) < points + 1:
        return None
    iqm = lambda values: float(metrics.aggregate_iqm(np.array([[v] for v in values])))  # noqa: E731
    tail = [iqm([r["test_greedy"][i] for r in runs]) for i in range(-points, 0)]
    last, before = np.mean(tail[FLAT_POINTS:]), np.mean(tail[:FLAT_POINTS])
    gain = last - iqm([r["test_greedy"][0] for r in runs])
    return 0.0 if gain == 0 else float((last - before) / abs(gain))


def per_run(by_key: Dict[str, List[dict]], score) -> Dict[str, np.ndarray]:
    """rliable's score layout, ``[runs, 1 task]``, of one number per run (final return, area)."""
    return {k: np.array([[score(r)] for r in rs]) for k, rs in by_key.items()}


def interval_estimates(scores: dict, statistic, reps: int, seed: int = 0):
    """rliable's ``get_interval_estimates``, reproducible: its stratified bootstrap draws the
    resampling indices from numpy's global RNG (``StratifiedBootstrap.update_indices`` calls
    ``np.random.choice``), so the ``random_state`` it accepts does not fix them, and two
    ``aggregate`` runs on the same files gave different intervals. Each key is estimated on its
    own from the same seed, so its interval depends neither on the statistics computed before
    nor on the other keys (methods) in ``scores``."""
    from rliable import library as rly

    points, intervals = {}, {}
    for key, value in scores.items():
        np.random.seed(seed)
        point, interval = rly.get_interval_estimates({key: value}, statistic, reps=reps,
                                                     random_state=np.random.RandomState(seed))
        points[key], intervals[key] = point[key], interval[key]
    return points, intervals


def plot_curves(by_method: Dict[str, List[dict]], path: Path, title: str, reps: int) -> None:
    """IQM over seeds of the return at common env steps, with 95% bootstrap bands (rliable)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from rliable import metrics, plot_utils

    end = min(r["steps"][-1] for rs in by_method.values() for r in rs)
    grid = np.linspace(end / CURVE_POINTS, end, CURVE_POINTS)
    curves = {m: np.stack([np.interp(grid, r["steps"], r["returns"]) for r in rs])[:, None, :] for m, rs in by_method.items()}
    iqm = lambda s: np.array([metrics.aggregate_iqm(s[..., t]) for t in range(s.shape[-1])])  # noqa: E731
    point, interval = interval_estimates(curves, iqm, max(200, reps // 10))
    fig, ax = plt.subplots(figsize=(6, 4))
    # matplotlib's colour cycle, as before rliable drew the curves: a method keeps its colour
    colors = {m: f"C{i}" for i, m in enumerate(curves)}
    plot_utils.plot_sample_efficiency_curve(grid, point, interval, algorithms=list(curves), colors=colors, ax=ax,
                                            xlabel="env steps", ylabel="episode return (IQM over seeds)",
                                            labelsize="medium", ticklabelsize="small", marker=None, linewidth=1.5)
    ax.set_title(title)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def plot_profile(final: Dict[str, np.ndarray], path: Path, title: str, reps: int) -> None:
    """rliable's performance profile of one task: the share of runs whose final score exceeds
    each threshold, with 95% bootstrap bands."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.lines import Line2D
    from rliable import library as rly
    from rliable import plot_utils

    values = np.concatenate([v.ravel() for v in final.values()])
    taus = np.linspace(values.min(), values.max(), 41)
    np.random.seed(0)  # its bootstrap draws from numpy's global RNG (interval_estimates)
    profiles, bands = rly.create_performance_profile(final, taus, reps=max(200, reps // 10))
    fig, ax = plt.subplots(figsize=(6, 4))
    plot_utils.plot_performance_profiles(profiles, taus, performance_profile_cis=bands, colors={m: f"C{i}" for i, m in enumerate(final)},
                                         xlabel=r"final greedy test return $\tau$", ylabel=r"fraction of runs with score $> \tau$",
                                         labelsize="medium", ticklabelsize="small", ax=ax)
    ax.set_title(title)
    ax.legend(handles=[Line2D([], [], color=f"C{i}", label=m) for i, m in enumerate(final)], fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def model_size(runs: List[dict], out: Path) -> None:
    """Parameters per method and scenario (median over seeds: SePS's count follows its K)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = []
    for scenario in sorted({r["scenario"] for r in runs}):
        for method in sorted({r["method"] for r in runs if r["scenario"] == scenario}):
            rs = [r for r in runs if (r["scenario"], r["method"]) == (scenario, method) and r["parameters_in_use"] is not None]
            if rs:
                rows.append({"scenario": scenario, "method": method,
                             "parameters_in_use": int(np.median([r["parameters_in_use"] for r in rs])),
                             "parameters_allocated": int(np.median([r["parameters_allocated"] for r in rs]))})
    if not rows:
        return
    write_csv(out / "model_size.csv", rows, MODEL_SIZE_FIELDS)
    # a grouped bar chart on a log scale: rliable's plots are of intervals and curves, not of counts
    scenarios = sorted({r["scenario"] for r in rows})
    methods = sorted({r["method"] for r in rows})
    width = 0.8 / len(methods)
    fig, ax = plt.subplots(figsize=(6, 4))
    for i, method in enumerate(methods):
        values = {r["scenario"]: r["parameters_in_use"] for r in rows if r["method"] == method}
        xs = [j + i * width for j, s in enumerate(scenarios) if s in values]
        bars = ax.bar(xs, [values[s] for s in scenarios if s in values], width, label=method)
        ax.bar_label(bars, fmt="%d", fontsize=6, rotation=90, padding=2)
    ax.set_xticks([j + 0.4 - width / 2 for j in range(len(scenarios))], scenarios)
    top = max(r["parameters_in_use"] for r in rows)
    ax.set(yscale="log", ylim=(min(r["parameters_in_use"] for r in rows) / 10, top * 10),  # bars start well below the smallest
           ylabel="parameters in use (policy + value)", title="model size")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out / "model_size.png", dpi=120)
    plt.close(fig)


def marl_eval(runs: List[dict]) -> dict:
    """marl-eval's layout: env -> task -> algorithm -> run -> step_i -> {step_count, return}."""
    data: dict = {}
    for r in runs:
        env, task = r["scenario"].split("_", 1) if "_" in r["scenario"] else (r["scenario"], r["scenario"])
        algo = f"{r['method']}_{r['algorithm']}"
        run = {f"step_{i}": {"step_count": int(s), "return": [float(v)]} for i, (s, v) in enumerate(zip(r["steps"], r["returns"]))}
        run["absolute_metrics"] = {"return": [final_return(r)]}
        data.setdefault(env, {}).setdefault(task, {}).setdefault(algo, {})[f"run_{r['seed']}"] = run
    return data


def write_csv(path: Path, rows: List[dict], fields: List[str]) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
