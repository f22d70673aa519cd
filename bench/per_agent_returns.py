"""Each agent's final return per method: which agents (types) a method serves.

    python bench/per_agent_returns.py --scenario crware_easy --algorithm a2c

A team return can hide that a method serves one type and starves another (C-RWARE: an agent
scores only with shelves of its own colour). Reads RLlib's ``agent_episode_returns_mean`` from
the campaign's Tune storage (finished trials only, like ``python -m bench.campaign aggregate``);
an agent's final return is its mean over the last ``FINAL_FRACTION`` of the iterations in which
it finished an episode. Per method and agent: IQM over seeds with a 95% stratified bootstrap
interval (rliable). Writes ``per_agent_{scenario}_{algorithm}.csv`` next to the campaign's
summary.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Dict, List

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.campaign
from bench.campaign import report, results  # noqa: E402

FIELDS = ["scenario", "method", "agent", "seeds", "iqm", "iqm_low", "iqm_high"]


def agent_final_returns(result_file: Path) -> Dict[str, float]:
    """One finished trial's final return per agent; empty if the trial did not finish."""
    rows = [json.loads(line) for line in result_file.read_text().splitlines() if line.strip()]
    if not rows or rows[-1].get("done") is not True:
        return {}
    rows = [r for r in rows if "num_env_steps_sampled_lifetime" in (r.get("env_runners") or {})]
    steps = np.array([r["env_runners"]["num_env_steps_sampled_lifetime"] for r in rows], float)
    per_agent: Dict[str, List[float]] = {}
    for row in (rows[i] for i in results.kept_timeline(steps)):  # a restored trial's abandoned rows dropped
        for agent, value in ((row.get("env_runners") or {}).get("agent_episode_returns_mean") or {}).items():
            if value == value:  # NaN: no episode of this agent ended in that iteration
                per_agent.setdefault(agent, []).append(value)
    finals = {}
    for agent, values in per_agent.items():
        n = max(1, int(np.ceil(results.FINAL_FRACTION * len(values))))
        finals[agent] = float(np.mean(values[-n:]))
    return finals


def main() -> None:
    from rliable import metrics

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", required=True)
    parser.add_argument("--algorithm", default="a2c")
    parser.add_argument("--storage", type=Path, default=results.DEFAULT_STORAGE)
    parser.add_argument("--out", type=Path, default=results.DEFAULT_OUT)
    parser.add_argument("--reps", type=int, default=2000)
    args = parser.parse_args()

    rows = []
    for experiment in sorted(args.storage.glob(f"{args.scenario}-*-{args.algorithm}")):
        method = experiment.name.rsplit("-", 2)[1]
        runs = [f for f in map(agent_final_returns, sorted(experiment.glob("*/result.json"))) if f]
        if not runs:
            continue
        agents = sorted(set.intersection(*(set(r) for r in runs)), key=lambda a: (len(a), a))
        scores = {a: np.array([[r[a]] for r in runs]) for a in agents}
        point, interval = report.interval_estimates(scores, lambda s: np.array([metrics.aggregate_iqm(s)]), args.reps)
        for a in agents:
            rows.append({"scenario": f"{args.scenario} ({args.algorithm})", "method": method, "agent": a, "seeds": len(runs),
                         "iqm": round(float(point[a][0]), 4), "iqm_low": round(float(interval[a][0][0]), 4),
                         "iqm_high": round(float(interval[a][1][0]), 4)})
            print(f"{method:8s} {a:10s} {len(runs)} seeds  IQM {point[a][0]:.3f} [{interval[a][0][0]:.3f}, {interval[a][1][0]:.3f}]")
    if not rows:
        raise SystemExit(f"No finished trial of {args.scenario}-*-{args.algorithm} under {args.storage}.")
    report.write_csv(args.out / f"per_agent_{args.scenario}_{args.algorithm}.csv", rows, FIELDS)


if __name__ == "__main__":
    main()
