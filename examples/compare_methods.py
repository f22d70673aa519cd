"""Compare sharing methods and seeds on one scenario: CSV, learning curves, model sizes.

    python examples/compare_methods.py                                   # BPS v1, small budget
    python examples/compare_methods.py --env lbf --env-config '{"levels": [1,1,2,2]}' \
        --methods fups,adaps,nops --seeds 0,1,2 --env-steps 100000 --out results/lbf

Writes curves.csv, sizes.csv, learning_curves.png (mean and min-max band over seeds) and
model_size.png (trainable parameters relative to FuPS) into --out.
"""

import argparse
import json
import sys
from pathlib import Path

import ray
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))  # the comparison helpers live in bench/
from comparison import compare  # noqa: E402

parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
parser.add_argument("--env", default="bps")
parser.add_argument("--env-config", type=json.loads, default={"preset": "v1"})
parser.add_argument("--methods", default="fups,adaps,seps,nops")
parser.add_argument("--seeds", default="0,1")
parser.add_argument("--env-steps", type=int, default=12_000)
parser.add_argument("--shared-training-env-steps", type=int, default=0, help="AdaPS/SePS: shared training before the identity fit")
parser.add_argument("--batch", type=int, default=2_000, help="train batch per iteration in env steps (minibatch: a quarter)")
parser.add_argument("--out", default="results/compare")
args = parser.parse_args()

methods = args.methods.split(",")
unknown = set(methods) - set(rllib_adaps.METHODS)
if unknown:
    parser.error(f"unknown methods {sorted(unknown)}; choose from {list(rllib_adaps.METHODS)}")

config = (
    PPOConfig()
    .environment(args.env, env_config=args.env_config)
    .env_runners(num_env_runners=0, num_envs_per_env_runner=8)
    .training(lr=3e-4, entropy_coeff=0.01, gamma=0.99, train_batch_size_per_learner=args.batch, minibatch_size=args.batch // 4, num_epochs=4)
    .rl_module(model_config={"fcnet_hiddens": [64, 64]})
)
pretraining = {"shared_training_env_steps": args.shared_training_env_steps, "identity_env_steps": 1_000}
ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
summary = compare(
    config, methods, [int(s) for s in args.seeds.split(",")], args.env_steps, args.out, scenario=f"{args.env} {args.env_config}",
    options={m: pretraining for m in ("adaps", "seps")},
)
for method, size in summary["sizes"].items():
    final = [r["episode_return_mean"] for r in summary["rows"] if r["method"] == method]
    print(f"{method:8s} params {size:>8,d}  last return {final[-1]:.3f}")
print(f"wrote {args.out}/curves.csv, sizes.csv, learning_curves.png, model_size.png")
