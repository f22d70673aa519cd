"""The ``rllib`` command (Ray no longer ships one): train tuned examples, evaluate checkpoints.

    rllib train file tuned_examples/adaps_lbf.yaml --stop '{"training_iteration": 5}'
    rllib train file tuned_examples/adaps_lbf.yaml --resume   # after a crash or Ctrl-C
    rllib evaluate ~/ray_results/adaps-lbf/PPO_.../checkpoint_000004 --episodes 10

Training runs through Ray Tune: the usual progress table, result files, TensorBoard logs and
checkpoints under ``--storage-path`` (default ``~/ray_results``).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any, Dict, List, Optional

from rllib_adaps.envs import EnvConfigError
from rllib_adaps.experiment import ExperimentError, build_experiment

USER_ERRORS = (ExperimentError, EnvConfigError, ValueError, FileNotFoundError)


def _json_arg(text: str) -> Dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise argparse.ArgumentTypeError(f"not valid JSON ({err.msg} at column {err.colno}): {text}") from None
    if not isinstance(value, dict):
        raise argparse.ArgumentTypeError(f"must be a JSON object such as '{{\"training_iteration\": 10}}', got {text}")
    return value


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {value}")
    return value


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rllib", description="RLlib experiments with adaptive parameter sharing (rllib-adaps).")
    commands = parser.add_subparsers(dest="command", required=True)

    train = commands.add_parser("train", help="train an experiment")
    train_kind = train.add_subparsers(dest="kind", required=True)
    file_cmd = train_kind.add_parser("file", help="train the experiment of a tuned-example file (.yaml, .json, .py)")
    file_cmd.add_argument("path", help="experiment file")
    file_cmd.add_argument("--stop", type=_json_arg, help="stop criteria as JSON; replaces the file's")
    file_cmd.add_argument("--storage-path", help="where Tune writes results and checkpoints (default ~/ray_results)")
    file_cmd.add_argument("--checkpoint-freq", type=int, default=None, help="checkpoint every N iterations (0: only at the end)")
    file_cmd.add_argument("--num-samples", type=_positive_int, default=None, help="trials to run (e.g. seeds)")
    file_cmd.add_argument("--address", help="address of a running Ray cluster (default: start a local Ray instance)")
    file_cmd.add_argument("--seed", type=int, default=None, help="random seed (config.debugging(seed=...))")
    file_cmd.add_argument(
        "--resume", action="store_true",
        help="continue this experiment's interrupted or failed trials from their last checkpoints (Tune restore; "
             "the stop criteria and checkpoint settings of the first launch apply)",
    )
    file_cmd.add_argument("-v", "--verbose", action="store_true", help="more output; full tracebacks on errors")

    evaluate = commands.add_parser("evaluate", help="roll out a checkpoint and print mean returns")
    evaluate.add_argument("checkpoint", help="checkpoint directory (an Algorithm checkpoint)")
    evaluate.add_argument("--episodes", type=_positive_int, default=10)
    evaluate.add_argument("--env", help="override the env name of the checkpoint's config")
    evaluate.add_argument("--explore", action="store_true", help="sample actions instead of taking the greedy ones")
    evaluate.add_argument("-v", "--verbose", action="store_true")
    return parser


def train_file(args: argparse.Namespace) -> int:
    import ray
    from ray import tune

    if args.resume:
        fixed = [flag for flag, value in (("--stop", args.stop), ("--num-samples", args.num_samples),
                                          ("--checkpoint-freq", args.checkpoint_freq), ("--seed", args.seed)) if value is not None]
        if fixed:
            raise ExperimentError(
                f"{', '.join(fixed)} cannot be combined with --resume: a resumed experiment keeps the settings of "
                "its first launch. Pass only the file, --storage-path and --address."
            )
    experiment = build_experiment(args.path)
    config = experiment.config
    if args.seed is not None:
        config.debugging(seed=args.seed)
    stop = args.stop if args.stop is not None else experiment.stop
    if not stop:
        raise ExperimentError(f"{args.path} has no stop criteria: add 'stop' to the file or pass --stop.")
    checkpoint = dict(experiment.checkpoint_config)
    if args.checkpoint_freq is not None:
        checkpoint["checkpoint_frequency"] = max(args.checkpoint_freq, 0)
    checkpoint.setdefault("checkpoint_at_end", True)
    storage = args.storage_path or experiment.storage_path
    storage = str(Path(storage).expanduser().resolve()) if storage else None

    if args.address is None:
        # RLlib iterates sets of agent ids, whose order follows Python's hash seed: fix it for
        # the Ray workers this command starts, so that one seed gives one run.
        os.environ.setdefault("PYTHONHASHSEED", "0")
    if args.resume:
        experiment_dir = Path(storage or "~/ray_results").expanduser() / experiment.name
        if not tune.Tuner.can_restore(str(experiment_dir)):
            raise ExperimentError(
                f"Nothing to resume at {experiment_dir}: no Tune experiment was started there. "
                "Run without --resume first, with the same --storage-path."
            )
    ray.init(address=args.address, include_dashboard=False, log_to_driver=True, ignore_reinit_error=True)
    if args.resume:
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=config.algo_class, param_space=config, resume_errored=True)
    else:
        tuner = tune.Tuner(
            config.algo_class,
            param_space=config,
            tune_config=tune.TuneConfig(num_samples=args.num_samples or experiment.num_samples),
            run_config=tune.RunConfig(
                name=experiment.name,
                stop=stop,
                storage_path=storage,
                verbose=2 if args.verbose else 1,
                checkpoint_config=tune.CheckpointConfig(**checkpoint),
            ),
        )
    results = tuner.fit()
    failed = [r for r in results if r.error]
    for result in results:
        if result.error:
            print(f"trial failed: {result.error}", file=sys.stderr)
            continue
        metrics = result.metrics or {}
        ret = metrics.get("env_runners", {}).get("episode_return_mean")
        print(f"trial {result.path}: iterations {metrics.get('training_iteration')}, "
              f"episode_return_mean {ret}, checkpoint {result.checkpoint.path if result.checkpoint else None}")
    return 1 if failed else 0


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    import ray

    from rllib_adaps.evaluation import evaluate

    path = Path(args.checkpoint).expanduser().resolve()
    if not path.is_dir():
        raise ExperimentError(f"Checkpoint not found: {path}")
    ray.init(include_dashboard=False, log_to_driver=args.verbose, ignore_reinit_error=True)
    report = evaluate(str(path), episodes=args.episodes, env=args.env, explore=args.explore)
    print(f"episodes: {report['episodes']}")
    print(f"mean return (sum over agents): {report['mean_return']:.4f}")
    for group, value in report["mean_return_per_group"].items():
        members = ", ".join(report["groups"][group])
        print(f"  group {group}: mean return per agent {value:.4f}  ({members})")
    return 0


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    if not args.verbose:
        os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    try:
        if args.command == "train":
            return train_file(args)
        return evaluate_checkpoint(args)
    except USER_ERRORS as err:
        if args.verbose:
            raise
        print(f"rllib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
