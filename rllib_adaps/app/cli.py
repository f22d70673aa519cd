"""The ``rllib`` command (Ray no longer ships one): train tuned examples, evaluate checkpoints.

    rllib train file tuned_examples/adaps_lbf.yaml --stop '{"training_iteration": 5}'
    rllib train file tuned_examples/adaps_lbf.yaml --resume   # after a crash or Ctrl-C
    rllib evaluate results/adaps-lbf/PPO_.../checkpoint_000004 --episodes 10

Training runs through Ray Tune: a progress table, result files, TensorBoard logs and
checkpoints under ``--storage-path`` (default ``~/ray_results``).

Nothing heavy is imported at module level: ``rllib --help`` parses its arguments without
importing Ray, RLlib or torch; they are imported once a command runs.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import re
import sys
import textwrap
from pathlib import Path
from typing import Any, Dict, List, Optional

DEFAULT_STORAGE = "~/ray_results"

EXAMPLES = """\
examples:
  # train the AdaPS tuned example for 40k env steps, results under ./results
  rllib train file tuned_examples/adaps_lbf.yaml --stop '{"num_env_steps_sampled_lifetime": 40000}' --storage-path results
  # three seeds of the same experiment
  rllib train file tuned_examples/seps_bps.yaml --num-samples 3 --storage-path results
  # continue an interrupted or failed run from its last checkpoints
  rllib train file tuned_examples/adaps_lbf.yaml --storage-path results --resume
  # roll out a checkpoint, with sampled and with greedy actions
  rllib evaluate results/adaps-lbf/PPO_lbf_00000_0_.../checkpoint_000000 --episodes 20 --mode both
  # learning curves (pip install -e ".[tensorboard]")
  tensorboard --logdir results/adaps-lbf

tuned examples: tuned_examples/{adaps,seps,snp,fups_id,fups,nops}_{lbf,crware,bps}.yaml
"""

#: Columns of the live progress table: result key -> header. A column appears once a trial
#: reports the key, so K and ARI show only for AdaPS and SePS runs.
PROGRESS_COLUMNS = {
    "training_iteration": "iter",
    "num_env_steps_sampled_lifetime": "env steps",
    "env_runners/episode_return_mean": "return mean",
    "identity_pretraining/num_clusters": "K",
    "identity_pretraining/adjusted_rand_index": "ARI",
    "time_this_iter_s": "s/iter",
    "time_total_s": "total s",
}

#: Seconds between two progress tables (one is printed at the end regardless).
PROGRESS_EVERY_S = 20

#: Known-harmless messages of Ray and RLlib, hidden unless ``-v``: (pattern, why harmless).
HARMLESS_MESSAGES = (
    (r"You are running \w+ on the new API stack",
     "RLlib announces that it uses its new API stack by default; this package only works on that stack"),
    (r"core_worker\.cc.*constructor arguments in the object store and max_restarts > 0",
     "Ray notes that restarting an EnvRunner actor needs its constructor arguments (the algorithm "
     "config), which the Algorithm holds in the object store for the whole run; if that process "
     "is lost the trial fails anyway"),
    (r"RLModule\(config=\[RLModuleConfig",
     "RLlib's own RLModule constructor still builds the deprecated RLModuleConfig for old custom "
     "models; this package's modules take the new keyword arguments"),
    (r"Install gputil for GPU system monitoring",
     "Tune's optional GPU usage monitor; training on CPU or GPU does not need it"),
    (r"Trainable\.setup took .* reuse_actors",
     "advice for searches over many short trials; this command starts each trial once"),
)

#: Loggers on this (driver) process that emit the messages above.
HARMLESS_LOGGERS = ("ray.rllib.algorithms.algorithm_config", "ray._common.deprecation", "ray.tune.utils.util",
                    "ray.tune.trainable.trainable")


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


def _add_verbose(parser: argparse.ArgumentParser, shows: str) -> None:
    parser.add_argument(
        "-v", "--verbose", action="store_true",
        help=f"show {shows}, and full tracebacks on errors (default: off: known-harmless Ray/RLlib warnings are "
             "hidden, see HARMLESS_MESSAGES in rllib_adaps/app/cli.py)",
    )


def _text(paragraph: str) -> str:
    return textwrap.fill(paragraph, width=88)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="rllib",
        description=_text("RLlib experiments with adaptive parameter sharing (rllib-adaps): train classic "
                          "tuned-example files through Ray Tune and evaluate their checkpoints."),
        epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="{train,evaluate}")

    train = commands.add_parser(
        "train", help="train an experiment", description="Train an experiment.", epilog=EXAMPLES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    train_kind = train.add_subparsers(dest="kind", required=True, metavar="{file}")
    file_cmd = train_kind.add_parser(
        "file", help="train the experiment of a tuned-example file (.yaml, .json, .py)",
        description=_text("Train the experiment of a tuned-example file (.yaml, .yml, .json or .py) through Ray Tune. "
                          "The live table shows the iteration, env steps, mean episode return (sampled actions), K "
                          "and ARI of identity pre-training (AdaPS/SePS; nan until the fit) and seconds per "
                          "iteration. At the end the trial directories and a tensorboard command are printed."),
        epilog=EXAMPLES, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    file_cmd.add_argument("path", help="experiment file, e.g. tuned_examples/adaps_lbf.yaml")
    file_cmd.add_argument(
        "--stop", type=_json_arg, metavar="JSON",
        help="stop criteria as a JSON object of result keys, e.g. '{\"num_env_steps_sampled_lifetime\": 40000}'; "
             "replaces the file's 'stop' (default: the file's)",
    )
    file_cmd.add_argument(
        "--storage-path", metavar="DIR",
        help=f"where Tune writes results, TensorBoard files and checkpoints, one directory per experiment "
             f"name (default: the file's 'storage_path', else {DEFAULT_STORAGE})",
    )
    file_cmd.add_argument(
        "--checkpoint-freq", type=int, default=None, metavar="N",
        help="checkpoint every N iterations, 0: only at the end (default: the file's checkpoint_config, "
             "else only at the end)",
    )
    file_cmd.add_argument(
        "--num-samples", type=_positive_int, default=None, metavar="N",
        help="number of trials of the experiment, e.g. for several seeds (default: the file's 'num_samples', else 1)",
    )
    file_cmd.add_argument(
        "--address", metavar="ADDR",
        help="address of a running Ray cluster, e.g. HEAD_IP:6379 or auto (default: start a local Ray instance)",
    )
    file_cmd.add_argument(
        "--seed", type=int, default=None, metavar="N",
        help="random seed, config.debugging(seed=N); same seed, same clusters and masks (default: no seed)",
    )
    file_cmd.add_argument(
        "--resume", action="store_true",
        help="continue this experiment's interrupted or failed trials from their last checkpoints (Tune restore; "
             "the stop criteria and checkpoint settings of the first launch apply) (default: off, a new experiment)",
    )
    _add_verbose(file_cmd, "everything Ray, Tune and RLlib print (their warnings and log lines, per-trial results)")

    evaluate = commands.add_parser(
        "evaluate", help="roll out a checkpoint and print mean returns, overall and per agent group",
        description=_text("Restore an Algorithm checkpoint, roll out whole episodes on this process and print the "
                          "mean return, overall and per agent group (cluster, agent or shared). By default actions "
                          "are sampled from the policy, as during training, so the numbers compare with the "
                          "training metrics (episode_return_mean); greedy actions (always the most likely one) can "
                          "score quite differently. The mode is printed with the results."),
        epilog="example:\n  rllib evaluate results/adaps-lbf/PPO_lbf_00000_0_.../checkpoint_000000 --episodes 20 --mode both",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    evaluate.add_argument("checkpoint", help="checkpoint directory (an Algorithm checkpoint, e.g. TRIAL_DIR/checkpoint_000000)")
    evaluate.add_argument("--episodes", type=_positive_int, default=10, metavar="N",
                          help="episodes to roll out per mode (default: 10)")
    evaluate.add_argument("--env", metavar="NAME", help="env name to evaluate on instead of the checkpoint's (default: the checkpoint's)")
    evaluate.add_argument(
        "--mode", choices=("sampled", "greedy", "both"), default="sampled",
        help="sampled: actions drawn from the policy, as in training and its metrics; greedy: the most likely "
             "action; both: report each (default: sampled)",
    )
    evaluate.add_argument("--explore", action="store_const", const="sampled", dest="explore_alias",
                          help=argparse.SUPPRESS)  # the old flag; sampled is now the default
    _add_verbose(evaluate, "the log lines of Ray and RLlib")
    return parser


# ----------------------------------------------------------------------------- quiet output
class _HarmlessFilter(logging.Filter):
    def __init__(self, patterns):
        super().__init__()
        self.pattern = re.compile("|".join(f"(?:{p})" for p in patterns))

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            return not self.pattern.search(record.getMessage())
        except Exception:  # a record whose arguments do not format: let it through
            return True


class _CurrentStderr(logging.StreamHandler):
    """Writes to whatever ``sys.stderr`` is when a record comes (``main()`` may run many times
    in one process, each with its own stderr)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def show_package_progress() -> None:
    """Prints the package's progress lines (``[rllib-adaps] ...``, INFO and up).

    The library itself only adds a ``NullHandler``; the command sets this up on the driver and,
    as Ray's ``worker_process_setup_hook``, in the trial and EnvRunner processes it starts.
    """
    package_logger = logging.getLogger("rllib_adaps")
    if not any(isinstance(h, _CurrentStderr) for h in package_logger.handlers):
        handler = _CurrentStderr()
        handler.setFormatter(logging.Formatter("[rllib-adaps] %(message)s"))
        package_logger.addHandler(handler)
    package_logger.setLevel(logging.INFO)
    package_logger.propagate = False


def quiet_environment(verbose: bool, stdout_is_terminal: bool) -> None:
    """Sets up output before Ray is imported (Ray reads these variables at import).

    - lines that Ray forwards from its workers and that match ``HARMLESS_MESSAGES`` are
      dropped (``RAY_DEDUP_LOGS_SKIP_REGEX``, which needs ``RAY_DEDUP_LOGS=1``, Ray's default);
    - the same messages logged on this process are dropped by a logging filter;
    - Ray's colour codes on worker prefixes only when writing to a terminal.
    """
    if verbose:
        return
    if not stdout_is_terminal:
        os.environ.setdefault("RAY_COLOR_PREFIX", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "1")
    skip = "|".join(f"(?:{pattern})" for pattern, _ in HARMLESS_MESSAGES)
    if os.environ.get("RAY_DEDUP_LOGS_SKIP_REGEX"):
        skip = f"{os.environ['RAY_DEDUP_LOGS_SKIP_REGEX']}|{skip}"
    os.environ["RAY_DEDUP_LOGS_SKIP_REGEX"] = skip
    ray_logging = sys.modules.get("ray._private.ray_logging")
    if ray_logging is not None:
        # Ray was imported before the arguments were parsed (``main()`` called from a program that
        # imported Ray): its log deduplicators have read the variable already; give them the pattern.
        for name in ("stdout_deduplicator", "stderr_deduplicator"):
            deduplicator = getattr(ray_logging, name, None)
            if deduplicator is not None and hasattr(deduplicator, "skip_re"):
                deduplicator.skip_re = re.compile(skip)
    harmless = _HarmlessFilter([pattern for pattern, _ in HARMLESS_MESSAGES])
    for name in HARMLESS_LOGGERS:
        logging.getLogger(name).addFilter(harmless)


def _progress_reporter(experiment_dir: Path):
    """Tune's table reporter with this package's columns, printed when new results arrive."""
    from ray.tune import CLIReporter

    class ProgressTable(CLIReporter):
        def __init__(self):
            super().__init__(metric_columns=dict(PROGRESS_COLUMNS), parameter_columns=[], max_report_frequency=PROGRESS_EVERY_S)
            self._reported = None
            self._experiment_dir = str(experiment_dir)

        def report(self, trials, done: bool, *sys_info: str):
            # Tune's "Result logdir" is its staging directory under Ray's session directory, not
            # where the results are; the scheduler line never changes here.
            lines = []
            for line in self._progress_str(trials, done, *sys_info).splitlines():
                if line.startswith("Result logdir:"):
                    line = f"Results: {self._experiment_dir}"
                elif line.startswith("Using FIFO scheduling"):
                    continue
                lines.append(line)
            self._print("\n".join(lines))

        def should_report(self, trials, done: bool = False) -> bool:
            seen = tuple((t.trial_id, t.status, (t.last_result or {}).get("training_iteration")) for t in trials)
            if done or (seen != self._reported and super().should_report(trials, done)):
                self._reported = seen
                return True
            return False

    return ProgressTable()


# ----------------------------------------------------------------------------- commands
def train_file(args: argparse.Namespace) -> int:
    from rllib_adaps.app.experiment import ExperimentError, build_experiment, check_stop

    if args.resume:
        fixed = [flag for flag, value in (("--stop", args.stop), ("--num-samples", args.num_samples),
                                          ("--checkpoint-freq", args.checkpoint_freq), ("--seed", args.seed)) if value is not None]
        if fixed:
            raise ExperimentError(
                f"{', '.join(fixed)} cannot be combined with --resume: a resumed experiment keeps the settings of "
                "its first launch. Pass only the file, --storage-path and --address."
            )
    if args.stop is not None:
        check_stop(args.stop, "--stop")
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
    storage = args.storage_path or experiment.storage_path or DEFAULT_STORAGE
    storage = str(Path(storage).expanduser().resolve())

    import ray
    from ray import tune

    if args.address is None:
        # RLlib iterates sets of agent ids, whose order follows Python's hash seed: fix it for
        # the Ray workers this command starts, so that one seed gives one run.
        os.environ.setdefault("PYTHONHASHSEED", "0")
    experiment_dir = Path(storage) / experiment.name
    if args.resume and not tune.Tuner.can_restore(str(experiment_dir)):
        raise ExperimentError(
            f"Nothing to resume at {experiment_dir}: no Tune experiment was started there. "
            "Run without --resume first, with the same --storage-path."
        )
    # Tune's newer console output always prints the trial's whole config (about 200 lines) and
    # a TensorBoard path under Ray's session directory, where there are no event files; its
    # older table reporter takes chosen columns.
    os.environ["RAY_AIR_NEW_OUTPUT"] = "0"
    # "local": a new instance even when `ray start` runs on this machine or RAY_ADDRESS is set,
    # as the help says; joining a cluster is explicit (--address auto or HEAD_IP:6379).
    ray.init(address=args.address or "local", include_dashboard=False, log_to_driver=True, ignore_reinit_error=True,
             runtime_env={"worker_process_setup_hook": show_package_progress})
    run_config = tune.RunConfig(
        name=experiment.name,
        stop=stop,
        storage_path=storage,
        verbose=2 if args.verbose else 1,
        progress_reporter=_progress_reporter(experiment_dir),
        checkpoint_config=tune.CheckpointConfig(**checkpoint),
    )
    if args.resume:
        # The restored experiment keeps its first launch's run settings, progress table included.
        tuner = tune.Tuner.restore(str(experiment_dir), trainable=config.algo_class, param_space=config, resume_errored=True)
    else:
        tuner = tune.Tuner(
            config.algo_class,
            param_space=config,
            tune_config=tune.TuneConfig(num_samples=args.num_samples or experiment.num_samples),
            run_config=run_config,
        )
    results = tuner.fit()
    return _report_results(results, experiment_dir)


def _number(value, digits: int = 4) -> str:
    """A result value for the final summary: integers without ``.0``, nan as ``n/a``."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return "n/a"
    return str(int(value)) if float(value).is_integer() else f"{value:.{digits}g}"


def _report_results(results, experiment_dir: Path) -> int:
    """Per trial: where it is, its last figures and checkpoint; then how to open TensorBoard."""
    import importlib.util

    failed = 0
    print()
    for result in results:
        metrics = result.metrics or {}
        print(f"trial directory: {result.path}")
        if result.error:
            failed += 1
            print(f"  failed: {result.error}", file=sys.stderr)
            continue
        ret = (metrics.get("env_runners") or {}).get("episode_return_mean")
        line = (f"  iterations {_number(metrics.get('training_iteration'))}, "
                f"env steps {_number(metrics.get('num_env_steps_sampled_lifetime'))}, episode_return_mean {_number(ret)}")
        identity = metrics.get("identity_pretraining") or {}
        k = metrics.get("identity_pretraining/num_clusters", identity.get("num_clusters"))
        if _number(k) != "n/a":
            ari = metrics.get("identity_pretraining/adjusted_rand_index", identity.get("adjusted_rand_index"))
            line += f", K {_number(k)}, ARI {_number(ari, 2)}"
            if Path(result.path, "clusters.json").exists():
                line += " (clusters.json, clusters.png)"
        print(line)
        print(f"  checkpoint: {result.checkpoint.path if result.checkpoint else None}")
    print(f"TensorBoard (event files are in the trial directories): tensorboard --logdir {experiment_dir}")
    if importlib.util.find_spec("tensorboard") is None:
        print('  tensorboard is not installed: pip install -e ".[tensorboard]" (or pip install tensorboard)')
    return 1 if failed else 0


def evaluate_checkpoint(args: argparse.Namespace) -> int:
    from rllib_adaps.app.evaluation import check_env_override, evaluate_modes
    from rllib_adaps.envs import register_envs
    from rllib_adaps.rllib.checkpoints import read_checkpoint

    modes = ("sampled", "greedy") if args.mode == "both" else (args.explore_alias or args.mode,)
    stored = read_checkpoint(args.checkpoint)  # what it is, before anything runs
    register_envs()  # the checkpoint's env may be one of this package's, looked up by name
    if args.env is not None:
        check_env_override(stored, args.env)
    # One local EnvRunner in this process: no Ray instance is started.
    reports = evaluate_modes(stored, episodes=args.episodes, env=args.env, modes=modes)
    for mode, report in reports.items():
        how = ("actions sampled from the policy, as in training metrics" if mode == "sampled"
               else "greedy: the most likely action")
        print(f"mode: {mode} ({how})")
        print(f"episodes: {report['episodes']}")
        print(f"mean return (sum over agents): {report['mean_return']:.4f}")
        for group, value in report["mean_return_per_group"].items():
            members = ", ".join(report["groups"][group])
            print(f"  group {group}: mean return per agent {value:.4f}  ({members})")
    return 0


def _user_errors() -> tuple:
    from rllib_adaps.app.experiment import ExperimentError
    from rllib_adaps.envs import EnvConfigError

    return (ExperimentError, EnvConfigError, ValueError, FileNotFoundError)


def main(argv: Optional[List[str]] = None) -> int:
    args = build_parser().parse_args(argv)
    quiet_environment(args.verbose, sys.stdout.isatty())
    show_package_progress()
    try:
        if args.command == "train":
            return train_file(args)
        return evaluate_checkpoint(args)
    except Exception as err:
        if args.verbose or not isinstance(err, _user_errors()):
            raise
        print(f"rllib: error: {err}", file=sys.stderr)
        return 2


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
