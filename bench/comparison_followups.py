"""Follow-ups where the learning comparison differs from the papers' shape.

    python bench/comparison_followups.py > docs/results/comparison/followups.txt

Same PPO settings as ``bench/learning_comparison.py``. Two questions:

1. LBF: AdaPS finished below FuPS, while the paper has it best. Davies-Bouldin chose K=2 in
   every seed (ARI 0.44). Does AdaPS with the true K=3 do better?
2. BPS v1: NoPS finished last at 30k env steps, while the paper has it among the best. Is that
   the budget? NoPS, FuPS and AdaPS, seed 0, at 100k env steps.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import ray
from learning_comparison import SCENARIOS, final_return, train_and_save  # bench/ is on sys.path

import rllib_adaps

OUT = Path("docs/results/comparison/followups")


def run(name: str, scenario: str, method: str, seed: int, env_steps: int, **overrides) -> dict:
    return train_and_save(OUT / f"{name}_{method}_s{seed}.json", scenario, method, seed, env_steps, **overrides)


def main() -> None:
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    rllib_adaps.register_envs()

    print("1. LBF, AdaPS with K fixed to the true 3 (40k env steps; compare final_returns.md: AdaPS auto-K 0.719, FuPS 0.807)")
    finals, aris = [], []
    for seed in (0, 1, 2):
        r = run("lbf_k3", "lbf", "adaps", seed, SCENARIOS["lbf"]["env_steps"], num_clusters=3)
        finals.append(final_return(r))
        aris.append(r["pretraining"].get("adjusted_rand_index"))
        print(f"   seed {seed}: final return {finals[-1]:.3f}, ARI {aris[-1]:.2f}", flush=True)
    print(f"   mean +- std: {np.mean(finals):.3f} +- {np.std(finals):.3f}")

    print("\n2. BPS v1 at 100k env steps, seed 0 (30k-step finals: NoPS -805, FuPS -765, AdaPS -622)")
    for method in ("nops", "fups", "adaps"):
        r = run("bps_v1_100k", "bps_v1", method, 0, 100_000)
        rows = r["rows"]
        at_30k = next(row["episode_return_mean"] for row in rows if row["env_steps"] >= 30_000)
        print(f"   {method:6s}: return at 30k {at_30k:.0f}, final (100k) {final_return(r):.0f}, "
              f"best {max(row['episode_return_mean'] for row in rows):.0f}, {r['wall_seconds']:.0f} s", flush=True)
    ray.shutdown()


if __name__ == "__main__":
    main()
