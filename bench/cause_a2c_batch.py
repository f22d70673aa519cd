"""Why AdaPS learns BPS v1 early under PPO but late under the papers' A2C: update size, horizon, epochs or loss?

    python -m bench.campaign run --scenarios bps_v1 --algorithm a2c --num-env-runners 0 --methods adaps \\
        --envs-per-runner 80 --storage results/cause_a2c_batch --out docs/results/cause_a2c_batch    # a2c+5x80
    python -m bench.campaign run --scenarios bps_v1 --algorithm a2c --num-env-runners 0 --methods adaps \\
        --rollout-steps 50 --storage results/cause_a2c_batch --out docs/results/cause_a2c_batch      # a2c+50x8
    python -m bench.campaign run --scenarios bps_v1 --algorithm ppo --num-epochs 1 --num-env-runners 0 --methods adaps \\
        --storage results/cause_ppo_epochs --out docs/results/cause_ppo_epochs                       # ppo+1ep
    python -m bench.campaign run --scenarios bps_v1 --algorithm ppo --num-epochs 1 --plain-loss --num-env-runners 0 \\
        --methods adaps --storage results/cause_ppo_epochs --out docs/results/cause_ppo_epochs       # ppo+1ep+plain
    python bench/cause_a2c_batch.py

Six protocols, AdaPS, the campaign's other settings and seeds:
- the papers' A2C: 5-step rollouts of 8 envs, one update per 40 env steps (campaign);
- 80 envs: 5-step rollouts of 80 envs, one update per 400 env steps (bigger update, same
  5-step returns);
- 50 steps: 50-step rollouts of 8 envs (a whole 50-step BPS episode per env), one update per
  400 env steps (bigger update, returns over the whole episode);
- PPO: 2,000-env-step batches (250-step rollouts), minibatches of 500 env steps, 4 epochs
  (campaign);
- PPO with 1 epoch: the same, each sample used in one optimizer step (4 per batch instead of 16);
- PPO with 1 epoch and a plain loss: also without RLlib PPO's KL penalty and value-loss
  clipping (as ``a2c_settings``); the clipped ratio stays.
Reads the runs' archives (``runs.jsonl``: the campaign's and this experiment's), writes
``protocols.csv`` and ``curves_protocols.png`` beside this experiment's own aggregate.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.campaign
from bench.campaign import report, results  # noqa: E402

OUT = results.ROOT / "docs" / "results" / "cause_a2c_batch"
EPOCHS_OUT = results.ROOT / "docs" / "results" / "cause_ppo_epochs"
PROTOCOLS = {  # label: (archive, algorithm)
    "a2c, 40 env steps/update (papers')": (results.DEFAULT_OUT, "a2c"),
    "a2c, 80 envs, 400/update": (OUT, "a2c+5x80"),
    "a2c, 50-step rollouts, 400/update": (OUT, "a2c+50x8"),
    "ppo, 500/minibatch, 4 epochs": (results.DEFAULT_OUT, "ppo"),
    "ppo, 500/minibatch, 1 epoch": (EPOCHS_OUT, "ppo+1ep"),
    "ppo, 1 epoch, no KL, no vf clip": (EPOCHS_OUT, "ppo+1ep+plain"),
}


def main(scenario: str = "bps_v1", method: str = "adaps", reps: int = 2000) -> None:
    from rliable import metrics

    by_protocol = {}
    for label, (folder, algorithm) in PROTOCOLS.items():
        runs = [r for r in results.read_archive(folder / results.ARCHIVE)
                if (r["scenario"], r["method"], r["algorithm"]) == (scenario, method, algorithm)]
        if len(runs) < 5:
            raise SystemExit(f"{label}: {len(runs)} finished runs in {folder / results.ARCHIVE}; run the commands in this script's docstring")
        by_protocol[label] = runs
    iqm = lambda s: np.array([metrics.aggregate_iqm(s)])  # noqa: E731
    final, final_ci = report.interval_estimates(report.per_run(by_protocol, results.final_return), iqm, reps)
    area, area_ci = report.interval_estimates(report.per_run(by_protocol, results.area_under_curve), iqm, reps)
    rows = []
    for k, rs in by_protocol.items():
        rows.append({"protocol": k, "seeds": len(rs), "env_steps": int(min(r["steps"][-1] for r in rs)),
                     "iqm": round(float(final[k][0]), 1), "iqm_low": round(float(final_ci[k][0][0]), 1), "iqm_high": round(float(final_ci[k][1][0]), 1),
                     "auc_iqm": round(float(area[k][0]), 1), "auc_low": round(float(area_ci[k][0][0]), 1), "auc_high": round(float(area_ci[k][1][0]), 1)})
        print(", ".join(f"{f}={v}" for f, v in rows[-1].items()))
    report.write_csv(OUT / "protocols.csv", rows, list(rows[0]))
    report.plot_curves(by_protocol, OUT / "curves_protocols.png", f"{method} on {scenario}: update size, horizon, epochs, loss", reps)


if __name__ == "__main__":
    main()
