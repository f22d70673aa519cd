"""The example scripts run as a user would run them (small budgets) and do what they say."""

import csv
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def run(script, *args, timeout=600):
    proc = subprocess.run([sys.executable, str(ROOT / "examples" / script), *args], capture_output=True, text=True, timeout=timeout, cwd=ROOT)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    return proc.stdout


def test_custom_env_with_different_spaces_trains_and_clusters_kinds():
    out = run("custom_pettingzoo_env.py", "--iters", "1")  # identities are fitted before the first update
    last = out.strip().splitlines()[-1]
    assert last.startswith("iter 1") and "clusters" in last and "ARI" in last


def test_drop_in_example_runs():
    out = run("drop_in_adaps.py", "--iters", "1", "--num-env-runners", "0")
    assert "iter 1: env steps" in out


def test_compare_methods_writes_csv_and_plots(tmp_path):
    out_dir = tmp_path / "cmp"
    run("compare_methods.py", "--env-config", '{"agents_per_type": [2, 2]}', "--methods", "fups,adaps", "--seeds", "0",
        "--env-steps", "800", "--batch", "400", "--out", str(out_dir))
    rows = list(csv.DictReader(open(out_dir / "curves.csv")))
    assert {(r["method"], r["seed"]) for r in rows} == {("fups", "0"), ("adaps", "0")}
    sizes = {r["method"]: int(r["parameters"]) for r in csv.DictReader(open(out_dir / "sizes.csv"))}
    assert sizes["fups"] == sizes["adaps"]
    assert (out_dir / "learning_curves.png").stat().st_size > 1000 and (out_dir / "model_size.png").stat().st_size > 1000
    assert (out_dir / "clustering.csv").exists()
