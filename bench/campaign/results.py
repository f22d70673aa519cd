"""The runs of the campaign: read from Tune's result files, and archived beyond them.

A run's score is its test return at the end (protocol 2, ``rllib_adaps.with_test_returns``):
the greedy (and sampled) return of 20 whole episodes, the sum over agents per episode, tested
after the first iteration, every twentieth of the budget and at its end; the area under that test curve measures learning speed.
Protocol 1's runs have no tests; their final return is the mean of
``env_runners/episode_return_mean`` (training episodes, RLlib's window) over the last
``FINAL_FRACTION`` of the iterations.

The archive, ``runs.jsonl`` in the output folder, holds one finished run per line (curve, ARI,
parameters) and is read back by the next ``aggregate``. Tune's storage (``results/``, not in
git) does not outlive the machine it ran on, so a campaign spread over several machines or
sessions is aggregated from the runs in storage plus the archived ones (a run in storage
replaces its archived line).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import List

import numpy as np

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_STORAGE = ROOT / "results" / "campaign_v2"
#: Protocol 2's results; protocol 1's (training returns, RLlib's A2C) stay in docs/results/campaign.
DEFAULT_OUT = ROOT / "docs" / "results" / "campaign_v2"
FINAL_FRACTION = 0.1  # the final return averages the last 10% of a run's iterations
ARCHIVE = "runs.jsonl"  # every finished run, in the output folder (see the module docstring)


def read_runs(storage: Path) -> List[dict]:
    """Every finished trial under ``storage`` (Tune's result.json files): scenario, method, seed,
    curve, ARI. A trial counts once Tune marked its last result ``done`` (its stop criterion, the
    budget, was met); unfinished ones (an interrupted campaign) are listed and left out, so that
    no statistic mixes budgets."""
    runs = []
    for result_file in sorted(storage.glob("*/*/result.json")):
        name = result_file.parent.parent.name
        scenario, method, algorithm = name.rsplit("-", 2)
        rows = read_result_rows(result_file)
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
        tests = test_curve(rows)
        runs.append({
            "scenario": scenario, "method": method, "algorithm": algorithm,
            "seed": (rows[0].get("config") or {}).get("seed", result_file.parent.name),
            "steps": steps, "returns": returns, "ari": identity.get("adjusted_rand_index"),
            "parameters_in_use": sharing.get("parameters_in_use"), "parameters_allocated": sharing.get("parameters_allocated"),
            **tests,
        })
    return runs


def read_result_rows(result_file: Path) -> List[dict]:
    """A trial's results; a last line that does not parse is one Tune is still writing (a
    running trial) and is dropped, any other bad line is an error."""
    lines = [line for line in result_file.read_text().splitlines() if line.strip()]
    rows = []
    for i, line in enumerate(lines):
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            if i < len(lines) - 1:
                raise
    return rows


def test_curve(rows: List[dict]) -> dict:
    """The test returns of a trial's results, one point per test (results between two tests
    repeat the last one, or report NaN; a restored trial's re-run tests replace the abandoned
    ones)."""
    by_steps = {}
    for row in rows:
        test = ((row.get("evaluation") or {}).get("test_returns")) or {}
        if np.isfinite(test.get("env_steps", np.nan)) and "greedy_return_mean" in test:
            by_steps[float(test["env_steps"])] = (float(test["greedy_return_mean"]), float(test.get("sampled_return_mean", np.nan)))
    steps = np.array(sorted(by_steps), float)
    return {"test_steps": steps, "test_greedy": np.array([by_steps[s][0] for s in steps], float),
            "test_sampled": np.array([by_steps[s][1] for s in steps], float)}


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
        for key in TEST_KEYS:  # protocol 1's archives have none
            run[key] = np.array(run.get(key, []), float)
    return runs


def merge_runs(in_storage: List[dict], archived: List[dict]) -> List[dict]:
    """The runs in Tune's storage, plus the archived runs that storage no longer (or not yet) holds."""
    present = {run_key(r) for r in in_storage}
    kept = [r for r in archived if run_key(r) not in present]
    if kept:
        print(f"{len(in_storage)} runs read from Tune's storage, {len(kept)} more from the archive")
    return sorted(in_storage + kept, key=run_key)


TEST_KEYS = ("test_steps", "test_greedy", "test_sampled")


def write_archive(runs: List[dict], path: Path) -> None:
    lines = [json.dumps({**r, "steps": [int(s) for s in r["steps"]], "returns": [float(v) for v in r["returns"]],
                         **{k: [None if np.isnan(v) else float(v) for v in r.get(k, [])] for k in TEST_KEYS}},
                        allow_nan=False, separators=(",", ":")) for r in runs]
    path.write_text("\n".join(lines) + "\n")


def final_return(run: dict) -> float:
    n = max(1, int(np.ceil(FINAL_FRACTION * len(run["returns"]))))
    return float(np.mean(run["returns"][-n:]))


def has_tests(run: dict) -> bool:
    return len(run.get("test_steps", ())) > 0


def final_test_return(run: dict, mode: str = "greedy") -> float:
    """The test return at the end of the run (its last test)."""
    return float(run[f"test_{mode}"][-1])


def test_area_under_curve(run: dict) -> float:
    """The greedy test return averaged over the tested part of the run (trapezoids over env steps)."""
    return area_under_curve({"steps": run["test_steps"], "returns": run["test_greedy"]})


def area_under_curve(run: dict) -> float:
    """The return averaged over the whole run (trapezoids over env steps): how fast a method
    learns, where final returns tie because every method reaches the same ceiling (LBF)."""
    steps, returns = run["steps"], run["returns"]  # measured iterations only (read_runs)
    if len(steps) < 2:
        return float(returns[0])
    return float(np.trapezoid(returns, steps) / (steps[-1] - steps[0]))
