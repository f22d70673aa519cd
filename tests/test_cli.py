"""The ``rllib`` command: real training runs in a subprocess, checkpoints, evaluate, user errors, help."""

import argparse
import csv
import json
import os
import re
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
import yaml

from rllib_adaps.app.cli import main
from rllib_adaps.rllib.checkpoints import checkpoint_module_ids

ROOT = Path(__file__).resolve().parents[1]
RLLIB = [sys.executable, "-m", "rllib_adaps.app.cli"]


def small_copy(tmp_path, name):
    """The tuned example with a budget for CI: smaller batches and identity collection."""
    data = yaml.safe_load((ROOT / "tuned_examples" / f"{name}.yaml").read_text())
    spec = next(iter(data.values()))
    spec["config"].update({"train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 1, "num_envs_per_env_runner": 2,
                           "num_env_runners": 0})  # sampling in the trial's actor: one actor start less
    if spec["sharing"]["method"] in ("adaps", "seps"):
        spec["sharing"].update({"identity_env_steps": 300, "vae": {"min_updates": 150, "epochs": 2}})
    if spec["env"] == "crware":
        spec["config"]["env_config"]["max_steps"] = 100
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def user_env():
    """Ray's log defaults, as a user has them (the suite sets RAY_DEDUP_LOGS)."""
    return {k: v for k, v in os.environ.items() if k not in ("RAY_DEDUP_LOGS", "RAY_COLOR_PREFIX")}


def run(args, timeout=600):
    """The command as a user runs it: output to a pipe (not a terminal), Ray's log defaults."""
    return subprocess.run(RLLIB + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT, env=user_env())


def start(args):
    """``run`` without waiting."""
    return subprocess.Popen(RLLIB + args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=ROOT, env=user_env())


#: What the command hides unless -v (see cli.HARMLESS_MESSAGES), and Tune's config dump.
HIDDEN = ("on the new API stack", "RLModule(config=", "core_worker.cc", "Install gputil", "reuse_actors",
          "_disable_action_flattening", "\x1b[")


# One run (the README's main job); every tuned example is built in test_tuned_examples, and
# every method and env trains in test_sharing_e2e / test_envs_rllib.
@pytest.mark.parametrize("name", ["adaps_lbf"])
def test_train_file_writes_results_checkpoint_and_evaluates(tmp_path, name):
    path = small_copy(tmp_path, name)
    storage = tmp_path / "results"
    proc = run(["train", "file", str(path), "--stop", '{"training_iteration": 2}', "--storage-path", str(storage)])
    output = proc.stdout + proc.stderr
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    experiment_dir = storage / next(iter(yaml.safe_load(path.read_text())))
    trials = [p for p in experiment_dir.iterdir() if p.is_dir()]
    assert len(trials) == 1
    trial = trials[0]
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert list(trial.glob("events.out.tfevents*")), "TensorBoard files"
    checkpoints = sorted(trial.glob("checkpoint_*"))
    assert checkpoints
    # Quiet, plain output: the progress table with return and env steps, no harmless warnings.
    assert not [h for h in HIDDEN if h in output], output[-5000:]
    assert "return mean" in proc.stdout and "env steps" in proc.stdout and "s/iter" in proc.stdout
    assert "num_training_step_calls_per_iteration" not in output
    assert f"trial directory: {trial}" in proc.stdout
    assert f"tensorboard --logdir {experiment_dir}" in proc.stdout
    if name.startswith(("adaps", "seps")):
        assert results[-1]["identity_pretraining"]["done"]
        clusters = json.loads((trial / "clusters.json").read_text())
        assert clusters["num_clusters"] >= 2 and len(clusters["agent_to_cluster"]) == len(clusters["identities"])
        assert clusters["true_types"] is not None and clusters["adjusted_rand_index"] is not None
        assert clusters["k_selection"]["chosen"] == clusters["num_clusters"] and clusters["k_selection"]["criterion"]
        assert (trial / "clusters.png").stat().st_size > 1000
        assert "identity pre-training" in output
        # K and ARI: in the live table, and in progress.csv from its first row on.
        table_header = next(line for line in proc.stdout.splitlines() if "return mean" in line)
        assert " K " in table_header and " ARI " in table_header
        with open(trial / "progress.csv") as f:
            header = next(csv.reader(f))
        assert "identity_pretraining/num_clusters" in header and "identity_pretraining/adjusted_rand_index" in header
    else:
        assert not [line for line in proc.stdout.splitlines() if "return mean" in line and " ARI " in line]
    if name in ("adaps_lbf", "seps_bps", "fups_crware"):
        mode = ["--mode", "both"] if name == "adaps_lbf" else []
        ray_results = Path(os.environ["HOME"]) / "ray_results"  # conftest's temporary HOME
        before = set(ray_results.iterdir()) if ray_results.exists() else set()
        proc = run(["evaluate", str(checkpoints[-1]), "--episodes", "2", *mode])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        # Evaluation builds no Algorithm, so no logdir appears in ~/ray_results.
        assert (set(ray_results.iterdir()) if ray_results.exists() else set()) == before
        assert "mean return" in proc.stdout and "group" in proc.stdout
        assert "mode: sampled" in proc.stdout
        assert ("mode: greedy" in proc.stdout) == (name == "adaps_lbf")
        if name.startswith(("adaps", "seps")):
            assert "cluster_0" in proc.stdout
        assert not [h for h in HIDDEN if h in proc.stdout + proc.stderr]  # no Ray instance, no core_worker line
        # A trial directory instead of its checkpoint, and another env than the checkpoint's:
        # named before anything runs, with what to pass instead.
        proc = run(["evaluate", str(trial)])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert f"{trial} is a trial directory, not a checkpoint" in proc.stderr and str(checkpoints[-1]) in proc.stderr
        proc = run(["evaluate", str(checkpoints[-1]), "--env", "crware"])
        assert proc.returncode == 2 and "Traceback" not in proc.stderr
        assert "The checkpoint was trained on 'lbf' with env_config" in proc.stderr and "--env crware cannot run" in proc.stderr
        proc = run(["evaluate", str(checkpoints[-1]), "--env", "lbff"])
        assert proc.returncode == 2 and "Unknown env 'lbff' in the command line (--env). Did you mean 'lbf'?" in proc.stderr


def test_evaluate_refuses_a_plain_rllib_checkpoint_and_an_old_release(ray_local, tmp_path):
    from ray.rllib.algorithms.ppo import PPOConfig

    algo = PPOConfig().environment("CartPole-v1").env_runners(num_env_runners=0).build_algo()
    try:
        plain = algo.save_to_path(str(tmp_path / "plain"))
    finally:
        algo.stop()
    proc = run(["evaluate", plain])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert "is a plain RLlib PPO checkpoint" in proc.stderr and "Evaluate it with RLlib" in proc.stderr
    # A checkpoint whose pickled config names a module of the 0.2 layout (rllib_adaps.engine).
    old = tmp_path / "old"
    old.mkdir()
    (old / "class_and_ctor_args.pkl").write_bytes(_pickle_naming("rllib_adaps.engine", "ParameterSharingModule"))
    proc = run(["evaluate", str(old)])
    assert proc.returncode == 2 and "written by an older rllib-adaps release" in proc.stderr, proc.stderr[-3000:]
    proc = run(["evaluate", str(tmp_path)])
    assert proc.returncode == 2 and "is not an RLlib Algorithm checkpoint" in proc.stderr


def _pickle_naming(module: str, name: str) -> bytes:
    """A pickle that refers to ``module.name`` (a class of a layout that no longer exists)."""
    import pickle

    return pickle.PROTO + b"\x04" + pickle.GLOBAL + f"{module}\n{name}\n".encode() + pickle.STOP


def test_a_stop_key_that_training_never_reports_is_refused(tmp_path):
    """Tune would run forever on it (its only sign a warning); refused before Ray starts."""
    path = write(tmp_path, GOOD)
    proc = run(["train", "file", str(path), "--stop", '{"env_steps": 40000}'])
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "Unknown stop key 'env_steps' in --stop: training never reports it" in proc.stderr
    assert "num_env_steps_sampled_lifetime" in proc.stderr and "Started a local Ray instance" not in proc.stderr


def write(tmp_path, text, name="exp.yaml"):
    path = tmp_path / name
    path.write_text(text)
    return str(path)


GOOD = """
exp:
  run: PPO
  env: bps
  stop: {training_iteration: 1}
  sharing: {method: fups}
  config: {env_config: {preset: v1}}
"""


@pytest.mark.parametrize(
    "text, expected",
    [
        ("exp:\n  run: PPO\n  env: bps\n  config: {lr: 0.1\n", "YAML syntax error .* line"),
        (GOOD.replace("stop:", "stopp:"), "Unknown key 'stopp'.*Did you mean 'stop'"),
        (GOOD.replace("preset: v1}", "preset: v1}, lrr: 0.1"), "Unknown config key 'lrr'.*Did you mean 'lr'"),
        (GOOD.replace("run: PPO", "run: PPOO"), "Unknown algorithm 'PPOO'.*Did you mean 'PPO'"),
        (GOOD.replace("env: bps", "env: bpss"), "Unknown env 'bpss' in .*exp.yaml \\(key 'env'\\).*Did you mean 'bps'"),
        (GOOD.replace("method: fups", "method: adapss"),
         "In .*exp.yaml, key 'sharing.method': Unknown sharing method 'adapss'. Did you mean 'adaps'"),
        (GOOD.replace("method: fups", "method: adaps, mask_threshold: 1.5"),
         "In .*exp.yaml, key 'sharing.mask_threshold' \\(value 1.5\\): .*\\(0, 1\\)"),
        (GOOD.replace("method: fups", "method: seps, num_clusters: 40"),
         "In .*exp.yaml, key 'sharing.num_clusters' \\(value 40\\): num_clusters \\(K\\) must be in \\[1, 15\\]"),
        (GOOD.replace("method: fups", "method: adaps, shared_training_env_steps: -1"), "In .*exp.yaml, key 'sharing.shared_training_env_steps'"),
        (GOOD.replace("method: fups", "method: adaps, vae: {z_dim: 0}"), "In .*exp.yaml, key 'sharing.vae' \\(value \\{'z_dim': 0\\}\\): vae.z_dim must be"),
        (GOOD.replace("method: fups", "method: adaps, vae: {zdim: 4}"), "In .*exp.yaml, key 'sharing.vae.zdim': .*Did you mean 'z_dim'"),
        (GOOD.replace("method: fups", "method: adaps, num_cluster: 3"),
         "In .*exp.yaml, key 'sharing.num_cluster' \\(value 3\\): .*Did you mean 'num_clusters'"),
        (GOOD.replace("method: fups", "method: adaps, cluster_count: 3"), "key 'sharing.cluster_count'.*mask_seed"),
        (GOOD.replace("method: fups", "method: snp, mask_treshold: 0.3"), "key 'sharing.mask_treshold' \\(value 0.3\\): Unknown option 'mask_treshold' for sharing method 'snp'.*pruning_rate"),
        # among other options, only the misspelt one is cited (not every key with its value)
        (GOOD.replace("method: fups", "method: adaps, num_clusters: 3, mask_seed: 1, mask_treshold: 0.3"),
         "In .*exp.yaml, key 'sharing.mask_treshold' \\(value 0.3\\): Unknown option 'mask_treshold' for sharing method 'adaps'. Did you mean 'mask_threshold'"),
        (GOOD.replace("method: fups", "method: fups, num_clusters: 3"), "key 'sharing.num_clusters'"),
        (GOOD.replace("preset: v1", "preset: v9"), "In .*exp.yaml, key 'config.env_config': .*preset"),
        (GOOD + "  checkpoint_config: {checkpoint_frequency: -1}\n", "'checkpoint_config.checkpoint_frequency' in .*exp.yaml"),
        (GOOD + "  checkpoint_config: {num_to_keep: 0}\n", "'checkpoint_config.num_to_keep' in .*exp.yaml"),
        (GOOD + "  checkpoint_config: {checkpoint_freq: 3}\n", "checkpoint_config key 'checkpoint_freq'.*Did you mean 'checkpoint_frequency'"),
        (GOOD.replace("stop: {training_iteration: 1}", ""), "no stop criteria"),
        (GOOD.replace("training_iteration: 1", "env_runners/episode_reward_mean: 100"),
         "Unknown stop key 'env_runners/episode_reward_mean' in .*exp.yaml: training never reports it.*Did you mean 'env_runners/episode_return_mean'"),
        (GOOD.replace("training_iteration: 1", "training_iteration: ten"), "Stop value of 'training_iteration' in .*exp.yaml must be a number"),
    ],
)
def test_user_errors_are_named_and_exit_non_zero(tmp_path, capsys, text, expected):
    assert main(["train", "file", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    # only the error (after the package's own progress lines, if setting up got that far)
    assert [line for line in err.splitlines() if not line.startswith("[rllib-adaps] ")][0].startswith("rllib: error:"), err
    assert "Traceback" not in err and re.search(expected, err), err


def test_missing_file_and_bad_stop_json(tmp_path, capsys):
    assert main(["train", "file", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "file", write(tmp_path, GOOD), "--stop", "{training_iteration: 1"])
    assert exc.value.code == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_no_traceback_unless_verbose(tmp_path):
    path = write(tmp_path, GOOD.replace("run: PPO", "run: PPOO"))
    quiet, loud = start(["train", "file", path]), start(["train", "file", path, "-v"])  # both at once
    quiet_err, loud_err = quiet.communicate(timeout=300)[1], loud.communicate(timeout=300)[1]
    assert quiet.returncode == 2 and "Traceback" not in quiet_err and "Unknown algorithm" in quiet_err
    assert loud.returncode != 0 and "Traceback" in loud_err


def test_python_and_json_experiment_files(tmp_path):
    from rllib_adaps.app.experiment import build_experiment

    py = write(tmp_path, "from ray.rllib.algorithms.ppo import PPOConfig\n"
               "config = PPOConfig().environment('bps', env_config={'preset': 'v1'})\n"
               "stop = {'training_iteration': 1}\nsharing = {'method': 'snp', 'pruning_rate': 0.25}\n", "exp.py")
    experiment = build_experiment(py)
    assert experiment.stop == {"training_iteration": 1}
    assert experiment.config.rl_module_spec.model_config["pruning_rate"] == 0.25
    js = write(tmp_path, json.dumps(yaml.safe_load(GOOD)), "exp.json")
    assert build_experiment(js).config.env == "bps"


RESUMABLE_EXPERIMENT = '''
import pathlib

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback

from engine_views import assert_same_module, learner_views, runner_views  # tests/engine_views.py, shipped by value

HERE = pathlib.Path(__file__).parent


class FailOnce(RLlibCallback):
    def on_train_result(self, *, result, **kwargs):
        if result["training_iteration"] == 3 and not (HERE / "failed_once").exists():
            (HERE / "failed_once").touch()
            raise RuntimeError("injected failure")


class RunnersMatchAfterRestore(RLlibCallback):
    """Right after Tune's restore, before any sampling: does the remote EnvRunner hold the Learner's module?"""

    def on_checkpoint_loaded(self, *, algorithm, **kwargs):
        try:
            learner, runners = learner_views(algorithm)[0], runner_views(algorithm)
            assert len(runners) == 1
            assert_same_module(learner, runners[0])
            (HERE / "runners").write_text("same")
        except AssertionError as err:
            (HERE / "runners").write_text(f"differs: {err}")


config = (
    PPOConfig()
    .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
    .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
    .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
    .callbacks([FailOnce, RunnersMatchAfterRestore])
)
stop = {"training_iteration": 4}
sharing = {"method": "seps", "shared_training_env_steps": 300, "identity_env_steps": 300, "num_clusters": 3,
           "vae": {"min_updates": 150, "epochs": 2}}
name = "resumable"
'''


def test_resume_continues_a_failed_trial_from_its_checkpoint(ray_local, tmp_path, capsys):
    """A trial that failed after clustering resumes with --resume (Tune's restore): same SePS
    groups, no second fit, and the remote EnvRunner holds the Learner's module right after the
    restore. (Restoring outside Tune: tests/test_checkpoint.py.)"""
    path = tmp_path / "exp.py"
    path.write_text(RESUMABLE_EXPERIMENT)
    storage = tmp_path / "results"
    assert main(["train", "file", str(path), "--storage-path", str(storage), "--checkpoint-freq", "1"]) == 1
    assert "injected failure" in capsys.readouterr().err
    assert main(["train", "file", str(path), "--storage-path", str(storage), "--resume"]) == 0
    trial = next(p for p in (storage / "resumable").iterdir() if p.is_dir())
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == [1, 2, 3, 4]  # 3 and 4 after the resume
    first, last = results[1]["identity_pretraining"], results[-1]["identity_pretraining"]
    assert first["done"] and not first.get("restored")
    assert last["done"] and last["restored"] and last["labels"] == first["labels"]
    assert last["adjusted_rand_index"] == first["adjusted_rand_index"]  # recomputed from the installed clusters
    assert (tmp_path / "runners").read_text() == "same"
    final = sorted(trial.glob("checkpoint_*"))[-1] / "learner_group" / "learner" / "rl_module"
    assert checkpoint_module_ids(final) == ["default_policy"]  # bps runs on the fast path


def test_resume_errors(tmp_path, capsys):
    path = small_copy(tmp_path, "adaps_bps")
    assert main(["train", "file", str(path), "--storage-path", str(tmp_path / "none"), "--resume"]) == 2
    assert "Nothing to resume at" in capsys.readouterr().err
    assert main(["train", "file", str(path), "--resume", "--stop", '{"training_iteration": 9}']) == 2
    assert "--stop cannot be combined with --resume" in capsys.readouterr().err


HELP_PAGES = [["--help"], ["train", "--help"], ["train", "file", "--help"], ["evaluate", "--help"]]


@pytest.mark.parametrize("page", HELP_PAGES, ids=["rllib", "train", "train-file", "evaluate"])
def test_help_does_not_import_ray(page):
    """Help answers without importing Ray (which takes seconds): the console entry point, in a fresh process."""
    code = (
        "import sys\n"
        "from rllib_adaps.app.cli import main\n"
        "try:\n"
        f"    main({page!r})\n"
        "except SystemExit:\n"
        "    pass\n"
        "print('RAY_IMPORTED' if 'ray' in sys.modules else 'RAY_NOT_IMPORTED')\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    assert "usage: rllib" in proc.stdout
    last = proc.stdout.strip().splitlines()[-1]
    assert last == "RAY_NOT_IMPORTED", "the help page imported Ray (does rllib_adaps/__init__.py import it eagerly?)"


def test_help_describes_every_option_with_its_default():
    from rllib_adaps.app.cli import build_parser

    parser = build_parser()
    assert "examples:" in parser.format_help() and "rllib train file" in parser.format_help()
    commands = parser._subparsers._group_actions[0].choices  # noqa: SLF001 (argparse has no public walk)
    pages = [commands["train"]._subparsers._group_actions[0].choices["file"], commands["evaluate"]]  # noqa: SLF001
    for page in pages:
        for action in page._actions:  # noqa: SLF001
            if action.help == argparse.SUPPRESS or isinstance(action, argparse._HelpAction) or not action.option_strings:
                continue
            assert action.help and "default" in action.help, f"{page.prog} {action.option_strings}: {action.help!r}"


def test_the_ray_results_guard_flags_the_suites_writes_not_other_processes():
    """Another process (a campaign) writing into the real ~/ray_results does not fail the suite;
    a trial or experiment named like the suite's does."""
    from conftest import leaked_entries

    ours = ["PPO_bps_2026-12-07_13-45-46abc", "adaps-lbf", "2026-12-07_13-26-3613nygfma"]
    others = ["bps_v1-adaps-a2c", "2026-12-07_14-00-00xyz", "PPO_crware_2026-12-07_14-01-02def"]
    assert leaked_entries(others, ours) == []
    assert leaked_entries(["PPO_bps_2026-12-08_09-00-00zzz", "adaps-lbf"], ours) == ["PPO_bps_2026-12-08_09-00-00zzz", "adaps-lbf"]


def test_suite_writes_nothing_into_the_real_home():
    """conftest points HOME at a temporary directory: Ray's default results directory is in it."""
    import ray.train.constants

    home = Path.home()
    assert home.name.startswith("pytest-rllib-adaps-home-") and home.parent == Path(tempfile.gettempdir())
    assert Path(ray.train.constants.DEFAULT_STORAGE_PATH) == home / "ray_results"
