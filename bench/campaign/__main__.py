"""``python -m bench.campaign run|aggregate``: the command line (see the package docstring)."""

from __future__ import annotations

import argparse
from pathlib import Path

from . import __doc__ as CAMPAIGN_DOC
from .protocol import ALGORITHMS, COMPARISON, SCENARIOS
from .report import SUMMARY_FIELDS, aggregate
from .results import DEFAULT_OUT, DEFAULT_STORAGE
from .run import run


def main() -> None:
    import rllib_adaps

    parser = argparse.ArgumentParser(prog="python -m bench.campaign", description=CAMPAIGN_DOC,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
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
    run_parser.add_argument("--rllib-a2c", action="store_true",
                            help="A2C with RLlib's PPO loss pieces (standardised advantages, mean over agent rows, Adam eps "
                                 "1e-8, no clipping, torch's init) instead of the reference code's; an ablation, named "
                                 "apart (e.g. bps_v1-adaps-a2c+rllib)")
    run_parser.add_argument("--mask-threshold", type=float, default=None,
                            help="AdaPS's lambda (default 0.2, the paper's); an ablation, named apart "
                                 "(e.g. bps_v1-adaps-a2c+lambda0.5)")
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
        if args.rllib_a2c and args.algorithm != "a2c":
            parser.error("--rllib-a2c changes A2C's loss")
        if args.plain_loss and args.algorithm != "ppo":
            parser.error("--plain-loss changes PPO's loss; A2C's (a2c_settings) is already plain")
        if args.mask_threshold is not None and set(args.methods) != {"adaps"}:
            parser.error("--mask-threshold sets AdaPS's lambda: run it with --methods adaps")
        if not run(args):
            return  # no statistics of a campaign cut short
    for row in aggregate(Path(args.storage), Path(args.out), reps=args.reps, min_seeds=args.min_seeds):
        print(", ".join(f"{k}={row[k]}" for k in SUMMARY_FIELDS))


if __name__ == "__main__":
    main()
