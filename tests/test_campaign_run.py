"""The campaign's `run` as a real Tune experiment (bench/campaign/), at a smoke budget.

One trial of one (scenario, method) on a local Ray: it finishes and `aggregate`'s reader finds
it; a second `run` without --resume leaves the experiment alone and says so at the end (that
line at the start scrolls away under Tune's tables); with --resume a finished experiment is
restored through Tune and not trained again.
"""

import argparse
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("rliable")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # the repository root, for bench.campaign
from bench.campaign.results import read_runs  # noqa: E402
from bench.campaign.run import run  # noqa: E402


def smoke_args(storage: Path, resume: bool) -> argparse.Namespace:
    return argparse.Namespace(
        scenarios=["bps_v1"], methods=["fups"], seeds="0", algorithm="ppo", env_steps=2000,
        num_env_runners=0, envs_per_runner=8, rollout_steps=None, num_epochs=None, plain_loss=False, rllib_a2c=False,
        mask_threshold=None,
        checkpoint_every=20, address=None, resume=resume, storage=str(storage),
    )


def test_run_is_a_tune_experiment_that_skips_or_resumes_what_exists(tmp_path, capsys):
    storage = tmp_path / "campaign"
    assert run(smoke_args(storage, resume=False))
    runs = read_runs(storage)
    assert [(r["scenario"], r["method"], r["algorithm"], r["seed"]) for r in runs] == [("bps_v1", "fups", "ppo", 0)]
    assert runs[0]["steps"][-1] >= 2000
    # protocol 2: the run was tested at its end, greedy and sampled, through RLlib's evaluation
    assert runs[0]["test_steps"].tolist() == [runs[0]["steps"][-1]] and np.isfinite(runs[0]["test_greedy"]).all()
    result_file = next(storage.glob("bps_v1-fups-ppo/*/result.json"))
    rows_before = result_file.read_text().count("\n")
    capsys.readouterr()

    assert run(smoke_args(storage, resume=False))
    out = capsys.readouterr().out
    assert "bps_v1-fups-ppo: exists at" in out
    assert f"Skipped, already in {storage.resolve()} (pass --resume to continue them): bps_v1-fups-ppo" in out

    assert run(smoke_args(storage, resume=True))
    out = capsys.readouterr().out
    assert "Skipped" not in out
    assert result_file.read_text().count("\n") == rows_before  # restored finished, not trained again
    assert len(read_runs(storage)) == 1
