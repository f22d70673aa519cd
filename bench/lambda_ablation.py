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
sys.path.insert(0, str(ROOT))
from rliable import metrics  # noqa: E402

from bench.campaign.report import interval_estimates  # noqa: E402
from bench.campaign.results import final_test_return  # noqa: E402

runs = [json.loads(line) for line in open(ROOT / "docs" / "results" / "campaign_v2" / "runs.jsonl")]
def scores(method, algorithm, seeds=None):
    return np.array([[final_test_return(r)] for r in runs if r["scenario"] == "bps_v1" and r["method"] == method
                     and r["algorithm"] == algorithm and (seeds is None or r["seed"] in seeds)])
first5 = {0, 1000, 2000, 3000, 4000}
l5 = scores("adaps", "a2c+lambda0.5")
pairs = {
    ("lambda0.5", "lambda0.2 (10 seeds)"): (l5, scores("adaps", "a2c")),
    ("lambda0.5", "lambda0.2 (same 5 seeds)"): (l5, scores("adaps", "a2c", first5)),
    ("NoPS (10 seeds)", "lambda0.5"): (scores("nops", "a2c"), l5),
    ("SePS (10 seeds)", "lambda0.5"): (scores("seps", "a2c"), l5),
}
poi, ci = interval_estimates(pairs, metrics.probability_of_improvement, 2000)
print("# python bench/lambda_ablation.py: probability of improvement, final greedy test return, BPS v1, A2C, 2M env steps")
for k in pairs:
    print(f"P({k[0]} > {k[1]}) = {float(np.ravel(poi[k])[0]):.2f} [{float(np.ravel(ci[k][0])[0]):.2f}, {float(np.ravel(ci[k][1])[0]):.2f}]")
