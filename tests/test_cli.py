"""The ``rllib`` command: real training runs in a subprocess, checkpoints, evaluate, user errors."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from rllib_adaps.cli import main
from rllib_adaps.multi_module import checkpoint_module_ids

ROOT = Path(__file__).resolve().parents[1]
RLLIB = [sys.executable, "-m", "rllib_adaps.cli"]


def small_copy(tmp_path, name):
    """The tuned example with a budget for CI: smaller batches, pre-training after iteration 1."""
    data = yaml.safe_load((ROOT / "tuned_examples" / f"{name}.yaml").read_text())
    spec = next(iter(data.values()))
    spec["config"].update({"train_batch_size_per_learner": 400, "minibatch_size": 200, "num_epochs": 1, "num_envs_per_env_runner": 2})
    if "pretrain_env_steps" in spec["sharing"]:
        spec["sharing"].update({"pretrain_env_steps": 400, "identity_env_steps": 300})
    if spec["env"] == "crware":
        spec["config"]["env_config"]["max_steps"] = 100
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def run(args, timeout=600):
    return subprocess.run(RLLIB + args, capture_output=True, text=True, timeout=timeout, cwd=ROOT)


@pytest.mark.parametrize("name", ["adaps_lbf", "seps_bps", "fups_crware", "nops_bps", "snp_lbf", "fups_id_crware"])
def test_train_file_writes_results_checkpoint_and_evaluates(tmp_path, name):
    path = small_copy(tmp_path, name)
    storage = tmp_path / "results"
    proc = run(["train", "file", str(path), "--stop", '{"training_iteration": 2}', "--storage-path", str(storage)])
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    trials = [p for p in (storage / next(iter(yaml.safe_load(path.read_text())))).iterdir() if p.is_dir()]
    assert len(trials) == 1
    trial = trials[0]
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    assert [r["training_iteration"] for r in results] == [1, 2]
    assert list(trial.glob("events.out.tfevents*")), "TensorBoard files"
    checkpoints = sorted(trial.glob("checkpoint_*"))
    assert checkpoints
    if name.startswith(("adaps", "seps")):
        assert results[-1]["identity_pretraining"]["done"]
        clusters = json.loads((trial / "clusters.json").read_text())
        assert clusters["num_clusters"] >= 2 and len(clusters["agent_to_cluster"]) == len(clusters["identities"])
        assert clusters["true_types"] is not None and clusters["adjusted_rand_index"] is not None
        assert (trial / "clusters.png").stat().st_size > 1000
        assert "identity pre-training" in proc.stdout + proc.stderr
    if name in ("adaps_lbf", "seps_bps", "fups_crware"):
        proc = run(["evaluate", str(checkpoints[-1]), "--episodes", "2"])
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
        assert "mean return" in proc.stdout and "group" in proc.stdout
        if name.startswith("seps"):
            assert "group_0" in proc.stdout
        if name.startswith("adaps"):
            assert "cluster_0" in proc.stdout


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
        (GOOD.replace("env: bps", "env: bpss"), "Unknown env 'bpss'"),
        (GOOD.replace("method: fups", "method: adapss"), "Unknown sharing method 'adapss'.*Did you mean 'adaps'"),
        (GOOD.replace("method: fups", "method: adaps, mask_threshold: 1.5"), "\\(0, 1\\)"),
        (GOOD.replace("method: fups", "method: seps, num_clusters: 40"), "num_clusters"),
        (GOOD.replace("method: fups", "method: adaps, pretrain_env_steps: 0"), "pretrain_env_steps"),
        (GOOD.replace("method: fups", "method: adaps, z_dim: 0"), "z_dim"),
        (GOOD.replace("method: fups", "method: adaps, cluster_count: 3"), "Unknown pre-training option"),
        (GOOD.replace("preset: v1", "preset: v9"), "preset"),
        (GOOD.replace("stop: {training_iteration: 1}", ""), "no stop criteria"),
    ],
)
def test_user_errors_are_named_and_exit_non_zero(tmp_path, capsys, text, expected):
    assert main(["train", "file", write(tmp_path, text)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("rllib: error:")
    assert pytest.importorskip("re").search(expected, err), err


def test_missing_file_and_bad_stop_json(tmp_path, capsys):
    assert main(["train", "file", str(tmp_path / "nope.yaml")]) == 2
    assert "not found" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["train", "file", write(tmp_path, GOOD), "--stop", "{training_iteration: 1"])
    assert exc.value.code == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_no_traceback_unless_verbose(tmp_path):
    path = write(tmp_path, GOOD.replace("run: PPO", "run: PPOO"))
    quiet = run(["train", "file", path])
    assert quiet.returncode == 2 and "Traceback" not in quiet.stderr and "Unknown algorithm" in quiet.stderr
    loud = run(["train", "file", path, "-v"])
    assert loud.returncode != 0 and "Traceback" in loud.stderr


def test_python_and_json_experiment_files(tmp_path):
    from rllib_adaps.experiment import build_experiment

    py = write(tmp_path, "from ray.rllib.algorithms.ppo import PPOConfig\n"
               "config = PPOConfig().environment('bps', env_config={'preset': 'v1'})\n"
               "stop = {'training_iteration': 1}\nsharing = {'method': 'snp', 'pruning_rate': 0.25}\n", "exp.py")
    experiment = build_experiment(py)
    assert experiment.stop == {"training_iteration": 1}
    assert experiment.config.rl_module_spec.rl_module_specs["shared"].model_config["pruning_rate"] == 0.25
    js = write(tmp_path, json.dumps(yaml.safe_load(GOOD)), "exp.json")
    assert build_experiment(js).config.env == "bps"


RESUMABLE_EXPERIMENT = '''
import pathlib

from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback

MARKER = pathlib.Path(__file__).with_name("failed_once")


class FailOnce(RLlibCallback):
    def on_train_result(self, *, result, **kwargs):
        if result["training_iteration"] == 3 and not MARKER.exists():
            MARKER.touch()
            raise RuntimeError("injected failure")


config = (
    PPOConfig()
    .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
    .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
    .callbacks(FailOnce)
)
stop = {"training_iteration": 4}
sharing = {"method": "seps", "pretrain_env_steps": 300, "identity_env_steps": 300, "num_clusters": 3}
name = "resumable"
'''


def test_resume_continues_a_failed_trial_from_its_checkpoint(ray_local, tmp_path, capsys):
    """A trial that failed after clustering resumes with --resume: same SePS groups, no second fit."""
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
    assert not first.get("restored") and last["restored"] and last["labels"] == first["labels"]
    final = sorted(trial.glob("checkpoint_*"))[-1] / "learner_group" / "learner" / "rl_module"
    assert checkpoint_module_ids(final) == ["group_0", "group_1", "group_2"]


def test_resume_errors(tmp_path, capsys):
    path = small_copy(tmp_path, "adaps_bps")
    assert main(["train", "file", str(path), "--storage-path", str(tmp_path / "none"), "--resume"]) == 2
    assert "Nothing to resume at" in capsys.readouterr().err
    assert main(["train", "file", str(path), "--resume", "--stop", '{"training_iteration": 9}']) == 2
    assert "--stop cannot be combined with --resume" in capsys.readouterr().err
