"""The method comparison as a Tune campaign: scenarios x methods x seeds, then rliable statistics.

    python bench/campaign.py run --scenarios bps_v1 --seeds 0,1000,2000,3000,4000  # local Ray
    python bench/campaign.py run --scenarios all --address auto                   # a Ray cluster
    python bench/campaign.py run --scenarios bps_v1 --resume                      # after an interruption
    python bench/campaign.py aggregate                                           # statistics only

``run``: one Tune experiment per (scenario, method), named ``{scenario}-{method}-{algorithm}``
(``experiment_name``), each a grid over the seeds; every trial is a normal Tune trial
(result.json, progress.csv, TensorBoard files, checkpoints) under ``--storage``. Experiments run one after another; on a cluster the
seeds of one experiment run at once. ``--resume`` restores unfinished experiments with Tune's
own ``Tuner.restore`` and skips finished ones; without it an experiment already in storage
is left alone (listed again at the end). Ctrl-C: Tune saves the trials, and the driver
stops without starting the next experiment or aggregating.

Settings are fixed before any run and equal for every method (``SCENARIOS``, ``ALGORITHMS``):
the same PPO (or A2C) hyper-parameters, network (64x64), env-step budget and stop criterion.
The identity collection of AdaPS and SePS counts toward that budget (it is sampled env steps).

``aggregate`` reads Tune's result files only. The final return of a run is the mean of
``env_runners/episode_return_mean`` (the sum over agents of one episode, averaged over RLlib's
window of recent episodes) over the last ``FINAL_FRACTION`` of its iterations. Per scenario
and method it writes, with rliable (95% stratified bootstrap intervals):
- ``summary.csv``: scenario, method, seeds, env_steps, iqm, iqm_low, iqm_high, mean, mean_low,
  mean_high (final return), ari (mean ARI of the runs that cluster; empty for other methods);
- ``learning_speed.csv``: scenario, method, seeds, env_steps, auc_iqm, auc_low, auc_high: IQM
  of the return averaged over the whole run (the normalised area under the curve), where final
  returns tie at a ceiling;
- ``probability_of_improvement.csv``: P(AdaPS > method) with its interval;
- ``curves_{scenario}_{algorithm}.png``: IQM of the return over env steps with interval bands;
- ``model_size.csv`` / ``model_size.png``: parameters each method's module uses (and allocates),
  per scenario, read from the runs' ``sharing`` results;
- ``marl_eval.json``: every run in marl-eval's JSON layout (environment, task, algorithm, run,
  step: {step_count, return}), to compare with other MARL libraries;
- ``runs.jsonl``: the archive, one finished run per line (curve, ARI, parameters), read back by
  the next ``aggregate``. Tune's storage (``results/``, not in git) does not outlive the machine
  it ran on, so a campaign spread over several machines or sessions is aggregated from the runs
  in storage plus the archived ones (a run in storage replaces its archived line).
"""

from __future__ import annotations

import argparse
import csv
import itertools
import json
import os
from collections import Counter
from pathlib import Path
from typing import Dict, List

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_STORAGE = ROOT / "results" / "campaign"
DEFAULT_OUT = ROOT / "docs" / "results" / "campaign"
FINAL_FRACTION = 0.1  # the final return averages the last 10% of a run's iterations
CURVE_POINTS = 50  # env-step grid of the curves
SUMMARY_FIELDS = ["scenario", "method", "seeds", "env_steps", "iqm", "iqm_low", "iqm_high", "mean", "mean_low", "mean_high", "ari"]
SPEED_FIELDS = ["scenario", "method", "seeds", "env_steps", "auc_iqm", "auc_low", "auc_high"]
ARCHIVE = "runs.jsonl"  # every finished run, in the output folder (see the module docstring)

#: Scenarios of the papers (budgets: at least 10x release 0.1's; the papers use far more).
SCENARIOS: Dict[str, dict] = {
    "bps_v1": {"env": "bps", "env_config": {"preset": "v1"}, "env_steps": 300_000},
    "bps_v2": {"env": "bps", "env_config": {"preset": "v2"}, "env_steps": 160_000},
    "lbf": {"env": "lbf", "env_config": {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50},
            "env_steps": 400_000},
    # A cause experiment, not in the comparison: LBF without the agents' levels in the
    # observation, to test whether FuPS learns LBF fastest because it can read each agent's type.
    "lbf_hidden_levels": {"env": "lbf", "env_config": {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50,
                                                       "observe_agent_levels": False}, "env_steps": 400_000},
    # C-RWARE tiny-4ag (4 agents of 2 colours), rware's normal request queue (4 requested shelves).
    "crware": {"env": "crware", "env_config": {"task": "tiny-4ag", "max_steps": 500}, "env_steps": 500_000},
    # The same with rware's "easy" queue (8 requested shelves): the campaign's C-RWARE task,
    # chosen by a FuPS check before any comparison run (A2C, seed 0, 500k env steps,
    # docs/results/crware_check/): with the normal queue FuPS stayed at its initial level (about
    # 0.2 delivered per episode), with the easy one it rose to about 1.4.
    "crware_easy": {"env": "crware", "env_config": {"size": "tiny", "n_agents": 4, "n_colours": 2, "difficulty": "easy",
                                                    "max_steps": 500}, "env_steps": 500_000},
    # A cause experiment, not in the comparison: crware_easy without the per-colour permutation
    # of the observation, to test whether FuPS serves both colours because the permuted layout
    # tells a network the agent's colour.
    "crware_easy_unpermuted": {"env": "crware", "env_config": {"size": "tiny", "n_agents": 4, "n_colours": 2, "difficulty": "easy",
                                                               "max_steps": 500, "permute_observations": False},
                               "env_steps": 500_000},
}
#: ``--scenarios all``: the comparison (the FuPS check's "crware" is left out).
COMPARISON = ["bps_v1", "bps_v2", "lbf", "crware_easy"]

#: The same settings for every method. A2C is the papers' protocol (``../shared/reference``:
#: n-step returns over 5-step rollouts of 8 parallel envs, one optimizer step per rollout batch
#: of 40 env steps); one ``train()`` (one Tune result) runs 50 such steps (2,000 env steps).
ALGORITHMS = {
    "ppo": {"training": {"lr": 3e-4, "gamma": 0.99, "entropy_coeff": 0.01, "vf_loss_coeff": 0.5,
                         "train_batch_size_per_learner": 2000, "minibatch_size": 500, "num_epochs": 4}},
    # plus rllib_adaps.a2c_settings (lr 3e-4, entropy 0.01, ...); env_copies: the papers' 8
    # parallel envs (--envs-per-runner x EnvRunners), which experiment_name checks
    "a2c": {"rollout_steps": 5, "env_copies": 8, "env_steps_per_result": 2000},
}
PRETRAINING = {"identity_env_steps": 3_000}  # the default timeline: fit on the initial policy's transitions


def experiment_config(scenario: str, method: str, algorithm: str, num_env_runners: int, envs_per_runner: int,
                      rollout_steps: int | None = None, num_epochs: int | None = None, plain_loss: bool = False):
    """The AlgorithmConfig of one (scenario, method); the seed comes from Tune's grid.

    Cause experiments' knobs: ``rollout_steps`` (A2C only) replaces the papers' 5-step
    rollouts (one optimizer step per ``rollout_steps x envs`` env steps, n-step returns over the
    rollout); ``num_epochs`` (PPO only) replaces PPO's 4 passes over each batch; ``plain_loss``
    (PPO only) drops RLlib PPO's KL penalty and value-loss clipping, as ``a2c_settings`` does
    (the clipped ratio stays)."""
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps
    from rllib_adaps.sharing import PLAIN_LOSS

    spec = SCENARIOS[scenario]
    config = (
        PPOConfig()
        .environment(spec["env"], env_config=dict(spec["env_config"]))
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=envs_per_runner)
        .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
    )
    settings = ALGORITHMS[algorithm]
    if algorithm == "a2c":
        envs = envs_per_runner * max(1, num_env_runners)
        rollout_steps = rollout_steps or settings["rollout_steps"]
        config = rllib_adaps.a2c_settings(
            config.env_runners(rollout_fragment_length=rollout_steps)
            .training(train_batch_size_per_learner=rollout_steps * envs)
            .reporting(min_sample_timesteps_per_iteration=settings["env_steps_per_result"], min_time_s_per_iteration=0)
        )
    else:
        config = config.training(**settings["training"])
        if num_epochs:
            config = config.training(num_epochs=num_epochs)
        if plain_loss:
            config = config.training(**PLAIN_LOSS)
    options = dict(PRETRAINING) if method in ("adaps", "seps") else {}
    return rllib_adaps.configure_sharing(config, method, **options)


def experiment_name(scenario: str, method: str, algorithm: str, num_env_runners: int, envs_per_runner: int,
                    rollout_steps: int | None = None, num_epochs: int | None = None, plain_loss: bool = False) -> str:
    """``{scenario}-{method}-{algorithm}``; an A2C whose update is not the papers' (5-step rollouts
    of 8 env copies) says so: ``a2c+50x8`` is 50-step rollouts of 8 copies; so does a PPO with
    other than its 4 epochs per batch, ``ppo+1ep``, or without its KL penalty and value-loss
    clipping, ``ppo+plain`` (``ppo+1ep+plain``: both). Their runs then never
    share a name, a table row or a Tune staging folder with the campaign's: two drivers that
    start the same experiment name in the same second share Tune's staging folder (named by
    start time and experiment) and copy each other's trials into their storage."""
    if algorithm == "a2c":
        rollout = rollout_steps or ALGORITHMS["a2c"]["rollout_steps"]
        envs = envs_per_runner * max(1, num_env_runners)
        if (rollout, envs) != (ALGORITHMS["a2c"]["rollout_steps"], ALGORITHMS["a2c"]["env_copies"]):
            algorithm = f"a2c+{rollout}x{envs}"
    else:
        if num_epochs and num_epochs != ALGORITHMS["ppo"]["training"]["num_epochs"]:
            algorithm += f"+{num_epochs}ep"
        if plain_loss:
            algorithm += "+plain"
    return f"{scenario}-{method}-{algorithm}"


def env_seed_range(seed: int, num_env_runners: int, envs_per_runner: int) -> range:
    """The env seeds a run with ``config.seed = seed`` resets its env copies with.

    RLlib seeds EnvRunner ``w`` (0: the local one, 1..R remote) with ``seed + w`` and its vector
    env's copy ``c`` with that plus ``c`` (on both paths), so runs whose seeds differ by less
    than ``R + copies`` replay each other's env streams: with seeds 0..4 and 8 copies, 7 of a
    run's 8 copies draw the same episode starts as the next seed's, and the seeds' returns move
    together (measured: increments correlated 0.6-0.9 between seeds on BPS v1).
    """
    return range(seed, seed + num_env_runners + envs_per_runner)


def check_seeds_independent(seeds: List[int], num_env_runners: int, envs_per_runner: int) -> None:
    ranges = [(env_seed_range(s, num_env_runners, envs_per_runner), s) for s in sorted(seeds)]
    for (a, sa), (b, sb) in zip(ranges, ranges[1:]):
        if a.stop > b.start:
            raise SystemExit(f"Seeds {sa} and {sb} share env seeds (each run resets its env copies with seeds "
                             f"{a.start}..{a.stop - 1} and {b.start}..{b.stop - 1}): space the seeds at least "
                             f"{len(a)} apart, e.g. --seeds 0,1000,2000,3000,4000.")


def run(args: argparse.Namespace) -> bool:
    """Runs (or resumes) every experiment; False when interrupted (Ctrl-C)."""
    import ray
    from ray import tune

    import rllib_adaps

    os.environ.setdefault("PYTHONHASHSEED", "0")  # RLlib iterates sets of agent ids: one seed, one run
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    rllib_adaps.register_envs()
    seeds = [int(s) for s in args.seeds.split(",")]
    check_seeds_independent(seeds, args.num_env_runners, args.envs_per_runner)
    storage = str(Path(args.storage).resolve())
    skipped = []  # experiments that exist in storage, left alone without --resume
    try:
        for scenario, method in itertools.product(args.scenarios, args.methods):
            name = experiment_name(scenario, method, args.algorithm, args.num_env_runners, args.envs_per_runner,
                                   args.rollout_steps, args.num_epochs, args.plain_loss)
            path = Path(storage) / name
            config = experiment_config(scenario, method, args.algorithm, args.num_env_runners, args.envs_per_runner,
                                       args.rollout_steps, args.num_epochs, args.plain_loss)
            config.debugging(seed=tune.grid_search(seeds))
            if path.exists() and tune.Tuner.can_restore(str(path)):
                if not args.resume:
                    print(f"{name}: exists at {path}; pass --resume to continue it, or choose another --storage")
                    skipped.append(name)
                    continue
                tuner = tune.Tuner.restore(str(path), trainable=config.algo_class, param_space=config, resume_errored=True)
            else:
                stop = {"num_env_steps_sampled_lifetime": args.env_steps or SCENARIOS[scenario]["env_steps"]}
                tuner = tune.Tuner(
                    config.algo_class,
                    param_space=config,
                    run_config=tune.RunConfig(
                        name=name, storage_path=storage, stop=stop, verbose=1,
                        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=args.checkpoint_every, checkpoint_at_end=True,
                                                                num_to_keep=2),
                    ),
                )
            print(f"{name}: {len(seeds)} seeds", flush=True)
            results = tuner.fit()
            # Tune ends fit() quietly on Ctrl-C and marks every trial TERMINATED; only a trial that
            # met the stop criterion has done=True in its last result. Stop here rather than start
            # the next experiment; --resume continues.
            finished = sum(1 for r in results if r.error is None and (r.metrics or {}).get("done"))
            errored = sum(1 for r in results if r.error is not None)
            if finished + errored < len(results):
                print(f"{name}: interrupted ({finished} of {len(results)} trials finished); "
                      "run again with --resume to continue", flush=True)
                return False
        if skipped:  # repeated at the end: the line at the start scrolls away under Tune's tables
            print(f"Skipped, already in {storage} (pass --resume to continue them): {', '.join(skipped)}", flush=True)
        return True
    finally:
        ray.shutdown()


# ------------------------------------------------------------------------------ aggregation
def read_runs(storage: Path) -> List[dict]:
    """Every finished trial under ``storage`` (Tune's result.json files): scenario, method, seed,
    curve, ARI. A trial counts once Tune marked its last result ``done`` (its stop criterion, the
    budget, was met); unfinished ones (an interrupted campaign) are listed and left out, so that
    no statistic mixes budgets."""
    runs = []
    for result_file in sorted(storage.glob("*/*/result.json")):
        name = result_file.parent.parent.name
        scenario, method, algorithm = name.rsplit("-", 2)
        rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
        finished = bool(rows) and rows[-1].get("done") is True
        # the clustering as fitted (a run restored from a checkpoint adopts it later on)
        identity = next((r["identity_pretraining"] for r in rows if (r.get("identity_pretraining") or {}).get("done")), {})
        rows = [r for r in rows if "env_runners" in r and "episode_return_mean" in r["env_runners"]]
        if not rows:
            continue
        if not finished:
            print(f"left out, not finished: {name}/{result_file.parent.name} "
                  f"({int(rows[-1]['env_runners']['num_env_steps_sampled_lifetime'])} env steps)")
            continue
        steps = np.array([r["env_runners"]["num_env_steps_sampled_lifetime"] for r in rows], float)
        returns = np.array([r["env_runners"]["episode_return_mean"] for r in rows], float)
        measured = ~np.isnan(returns)  # NaN: no episode ended in that iteration (C-RWARE's 500-step episodes)
        steps, returns = steps[measured], returns[measured]
        kept = kept_timeline(steps)
        steps, returns = steps[kept], returns[kept]
        if not len(returns):
            print(f"left out, no episode ended: {name}/{result_file.parent.name}")
            continue
        sharing = rows[-1].get("sharing") or {}
        runs.append({
            "scenario": scenario, "method": method, "algorithm": algorithm,
            "seed": (rows[0].get("config") or {}).get("seed", result_file.parent.name),
            "steps": steps, "returns": returns, "ari": identity.get("adjusted_rand_index"),
            "parameters_in_use": sharing.get("parameters_in_use"), "parameters_allocated": sharing.get("parameters_allocated"),
        })
    return runs


def kept_timeline(steps: np.ndarray) -> np.ndarray:
    """Indices of the rows of the timeline that was kept. A trial restored from a checkpoint (``--resume``)
    appends its re-run iterations to result.json after the ones it abandoned, so the env steps go
    back; the abandoned rows (env steps past the restored point, up to half an iteration's
    steps of jitter) are dropped. Without this, the area under the curve and the curves' interpolation
    read a zig-zag."""
    if len(steps) < 2 or np.all(np.diff(steps) > 0):
        return np.arange(len(steps))
    half_step = 0.5 * np.median(np.diff(steps)[np.diff(steps) > 0])
    keep: List[int] = []
    for i, s in enumerate(steps):
        while keep and steps[keep[-1]] > s - half_step:
            keep.pop()
        keep.append(i)
    return np.array(keep, int)


def run_key(run: dict) -> tuple:
    return run["scenario"], run["algorithm"], run["method"], str(run["seed"])


def read_archive(path: Path) -> List[dict]:
    """The runs an earlier ``aggregate`` archived (``runs.jsonl``), curves as arrays again."""
    if not path.exists():
        return []
    runs = [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    for run in runs:
        steps, returns = np.array(run["steps"], float), np.array(run["returns"], float)
        kept = kept_timeline(steps)  # archives written before the restore fix hold abandoned rows
        run["steps"], run["returns"] = steps[kept], returns[kept]
    return runs


def merge_runs(in_storage: List[dict], archived: List[dict]) -> List[dict]:
    """The runs in Tune's storage, plus the archived runs that storage no longer (or not yet) holds."""
    present = {run_key(r) for r in in_storage}
    kept = [r for r in archived if run_key(r) not in present]
    if kept:
        print(f"{len(in_storage)} runs read from Tune's storage, {len(kept)} more from the archive")
    return sorted(in_storage + kept, key=run_key)


def write_archive(runs: List[dict], path: Path) -> None:
    lines = [json.dumps({**r, "steps": [int(s) for s in r["steps"]], "returns": [float(v) for v in r["returns"]]},
                        allow_nan=False, separators=(",", ":")) for r in runs]
    path.write_text("\n".join(lines) + "\n")


def final_return(run: dict) -> float:
    n = max(1, int(np.ceil(FINAL_FRACTION * len(run["returns"]))))
    return float(np.mean(run["returns"][-n:]))


def area_under_curve(run: dict) -> float:
    """The return averaged over the whole run (trapezoids over env steps): how fast a method
    learns, where final returns tie because every method reaches the same ceiling (LBF)."""
    steps, returns = run["steps"], run["returns"]  # measured iterations only (read_runs)
    if len(steps) < 2:
        return float(returns[0])
    return float(np.trapezoid(returns, steps) / (steps[-1] - steps[0]))


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
        label = scenario if algorithm == "ppo" else f"{scenario} ({algorithm})"
        for m, rs in by_method.items():
            aris = [r["ari"] for r in rs if r["ari"] is not None]
            common = {"scenario": label, "method": m, "seeds": len(rs), "env_steps": int(min(r["steps"][-1] for r in rs))}
            summary.append({
                **common,
                "iqm": round(float(iqm[m][0]), 4), "iqm_low": round(float(iqm_ci[m][0][0]), 4), "iqm_high": round(float(iqm_ci[m][1][0]), 4),
                "mean": round(float(mean[m][0]), 4), "mean_low": round(float(mean_ci[m][0][0]), 4),
                "mean_high": round(float(mean_ci[m][1][0]), 4), "ari": round(float(np.mean(aris)), 3) if aris else "",
            })
            speed.append({**common, "auc_iqm": round(float(auc[m][0]), 4), "auc_low": round(float(auc_ci[m][0][0]), 4),
                          "auc_high": round(float(auc_ci[m][1][0]), 4)})
        if "adaps" in scores:
            pairs = {f"adaps,{m}": (scores["adaps"], scores[m]) for m in scores if m != "adaps"}
            if pairs:
                poi, poi_ci = interval_estimates(pairs, metrics.probability_of_improvement, reps)
                for pair in pairs:
                    improvement.append({"scenario": label, "method": pair.split(",")[1], "p_adaps_better": round(float(np.ravel(poi[pair])[0]), 3),
                                        "low": round(float(np.ravel(poi_ci[pair])[0]), 3), "high": round(float(np.ravel(poi_ci[pair])[1]), 3)})
        plot_curves(by_method, out / f"curves_{scenario}_{algorithm}.png", f"{scenario} ({algorithm})", reps)
    write_csv(out / "summary.csv", summary, SUMMARY_FIELDS)
    write_csv(out / "learning_speed.csv", speed, SPEED_FIELDS)
    model_size(runs, out)
    if improvement:
        write_csv(out / "probability_of_improvement.csv", improvement, ["scenario", "method", "p_adaps_better", "low", "high"])
    (out / "marl_eval.json").write_text(json.dumps(marl_eval(runs), allow_nan=False))
    return summary


def per_run(by_key: Dict[str, List[dict]], score) -> Dict[str, np.ndarray]:
    """rliable's score layout, ``[runs, 1 task]``, of one number per run (final return, area)."""
    return {k: np.array([[score(r)] for r in rs]) for k, rs in by_key.items()}


def interval_estimates(scores: dict, statistic, reps: int, seed: int = 0):
    """rliable's ``get_interval_estimates``, reproducible: its stratified bootstrap draws the
    resampling indices from numpy's global RNG (``StratifiedBootstrap.update_indices`` calls
    ``np.random.choice``), so the ``random_state`` it accepts does not fix them; measured: two
    ``aggregate`` runs on the same files gave intervals that differed in the third digit. Each
    key is estimated on its own from the same seed, so its interval depends neither on the
    statistics computed before nor on the other keys (methods) in ``scores``."""
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
    from rliable import metrics

    end = min(r["steps"][-1] for rs in by_method.values() for r in rs)
    grid = np.linspace(end / CURVE_POINTS, end, CURVE_POINTS)
    curves = {m: np.stack([np.interp(grid, r["steps"], r["returns"]) for r in rs])[:, None, :] for m, rs in by_method.items()}
    iqm = lambda s: np.array([metrics.aggregate_iqm(s[..., t]) for t in range(s.shape[-1])])  # noqa: E731
    point, interval = interval_estimates(curves, iqm, max(200, reps // 10))
    fig, ax = plt.subplots(figsize=(6, 4))
    for m in curves:
        ax.plot(grid, point[m], label=m)
        ax.fill_between(grid, interval[m][0], interval[m][1], alpha=0.2)
    ax.set(xlabel="env steps", ylabel="episode return (IQM over seeds)", title=title)
    ax.legend(fontsize=8)
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
    write_csv(out / "model_size.csv", rows, ["scenario", "method", "parameters_in_use", "parameters_allocated"])
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


def main() -> None:
    import rllib_adaps

    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    run_parser = sub.add_parser("run", help="run the Tune experiments, then aggregate")
    run_parser.add_argument("--scenarios", default="all", help=f"comma-separated names of {list(SCENARIOS)}, or all: {COMPARISON}")
    run_parser.add_argument("--methods", default="all", help=f"comma-separated, or all: {list(rllib_adaps.METHODS)}")
    run_parser.add_argument("--seeds", default="0,1000,2000,3000,4000",
                            help="config seeds, spaced so that no two runs share env seeds (env_seed_range)")
    run_parser.add_argument("--algorithm", choices=list(ALGORITHMS), default="ppo")
    run_parser.add_argument("--env-steps", type=int, default=None, help="override every scenario's budget (smoke runs)")
    run_parser.add_argument("--num-env-runners", type=int, default=1)
    run_parser.add_argument("--envs-per-runner", type=int, default=8)
    run_parser.add_argument("--rollout-steps", type=int, default=None,
                            help="A2C: env steps per rollout and update (default 5, the papers'); for cause experiments, "
                                 "named apart from the campaign's (e.g. bps_v1-adaps-a2c+50x8)")
    run_parser.add_argument("--num-epochs", type=int, default=None,
                            help="PPO: passes over each batch (default 4); for cause experiments, named apart "
                                 "(e.g. bps_v1-adaps-ppo+1ep)")
    run_parser.add_argument("--plain-loss", action="store_true",
                            help="PPO without its KL penalty and value-loss clipping (a2c_settings' loss; the clipped "
                                 "ratio stays); for cause experiments, named apart (e.g. bps_v1-adaps-ppo+1ep+plain)")
    run_parser.add_argument("--checkpoint-every", type=int, default=20, help="iterations between checkpoints")
    run_parser.add_argument("--address", default=None, help="a Ray cluster (default: a local Ray instance)")
    run_parser.add_argument("--resume", action="store_true")
    for p in (run_parser, sub.add_parser("aggregate", help="statistics from the Tune results only")):
        p.add_argument("--storage", default=str(DEFAULT_STORAGE), help="Tune storage path of the campaign")
        p.add_argument("--out", default=str(DEFAULT_OUT))
        p.add_argument("--reps", type=int, default=2000, help="bootstrap resamples")
        p.add_argument("--min-seeds", type=int, default=5, help="methods with fewer finished runs are left out")
    args = parser.parse_args()
    if args.command == "run":
        args.scenarios = list(COMPARISON) if args.scenarios == "all" else args.scenarios.split(",")
        args.methods = list(rllib_adaps.METHODS) if args.methods == "all" else args.methods.split(",")
        unknown = (set(args.scenarios) - set(SCENARIOS)) | (set(args.methods) - set(rllib_adaps.METHODS))
        if unknown:
            parser.error(f"unknown scenarios or methods: {sorted(unknown)}")
        if args.rollout_steps is not None and args.algorithm != "a2c":
            parser.error("--rollout-steps sets A2C's rollouts; PPO's batch is ALGORITHMS['ppo']")
        if args.num_epochs is not None and (args.algorithm != "ppo" or args.num_epochs < 1):
            parser.error("--num-epochs sets PPO's passes over each batch (a positive integer); A2C takes one step per batch")
        if args.plain_loss and args.algorithm != "ppo":
            parser.error("--plain-loss changes PPO's loss; A2C's (a2c_settings) is already plain")
        if not run(args):
            return  # no statistics of a campaign cut short
    for row in aggregate(Path(args.storage), Path(args.out), reps=args.reps, min_seeds=args.min_seeds):
        print(", ".join(f"{k}={row[k]}" for k in SUMMARY_FIELDS))


if __name__ == "__main__":
    main()
