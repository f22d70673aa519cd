"""AdaPS's lambda ablation on BPS v1: probability of improvement on the final greedy test
return between lambda 0.5 and the comparison's 0.2, and against NoPS and SePS, from the runs
kept in ``docs/results/campaign_v2/runs.jsonl`` (rliable, the report's seeded bootstrap).

    python bench/lambda_ablation.py > docs/results/campaign_v2/lambda_ablation.txt
"""

import json
import sys
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # run as a script: bench.campaign from the repository root
from rliable import metrics  # noqa: E402

from bench.campaign.report import interval_estimates  # noqa: E402
from bench.campaign.results import final_test_return  # noqa: E402

RUNS = ROOT / "docs" / "results" / "campaign_v2" / "runs.jsonl"
ABLATION = "a2c+lambda0.5"


def scores(runs: list, method: str, algorithm: str, seeds=None) -> np.ndarray:
    """rliable's ``[runs, 1 task]`` layout of the final greedy test returns on BPS v1."""
    return np.array([[final_test_return(r)] for r in runs if r["scenario"] == "bps_v1" and r["method"] == method
                     and r["algorithm"] == algorithm and (seeds is None or r["seed"] in seeds)])


def main() -> None:
    runs = [json.loads(line) for line in open(RUNS)]
    ablation_seeds = {r["seed"] for r in runs if r["algorithm"] == ABLATION}
    ablation = scores(runs, "adaps", ABLATION)
    pairs = {
        ("lambda0.5", "lambda0.2 (10 seeds)"): (ablation, scores(runs, "adaps", "a2c")),
        ("lambda0.5", f"lambda0.2 (same {len(ablation_seeds)} seeds)"): (ablation, scores(runs, "adaps", "a2c", ablation_seeds)),
        ("NoPS (10 seeds)", "lambda0.5"): (scores(runs, "nops", "a2c"), ablation),
        ("SePS (10 seeds)", "lambda0.5"): (scores(runs, "seps", "a2c"), ablation),
    }
    poi, ci = interval_estimates(pairs, metrics.probability_of_improvement, 2000)
    print("# python bench/lambda_ablation.py: probability of improvement, final greedy test return, BPS v1, A2C, 2M env steps")
    for x, y in pairs:
        low, high = (float(np.ravel(bound)[0]) for bound in ci[x, y])
        print(f"P({x} > {y}) = {float(np.ravel(poi[x, y])[0]):.2f} [{low:.2f}, {high:.2f}]")


if __name__ == "__main__":
    main()
