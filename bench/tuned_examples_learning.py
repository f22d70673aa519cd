"""Runs tuned examples through the real `rllib` command for their full stop budget and
summarises whether they learn: first vs last mean episode return, wall time, clustering.

    python bench/tuned_examples_learning.py adaps_bps adaps_lbf adaps_crware
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "docs" / "results"


def run(name: str, storage: Path) -> dict:
    path = ROOT / "tuned_examples" / f"{name}.yaml"
    start = time.perf_counter()
    command = [sys.executable, "-m", "rllib_adaps.app.cli", "train", "file", str(path), "--storage-path", str(storage)]
    proc = subprocess.run(command, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    experiment = next(iter(yaml.safe_load(path.read_text())))
    trial = next(p for p in (storage / experiment).iterdir() if p.is_dir())
    results = [json.loads(line) for line in (trial / "result.json").read_text().splitlines()]
    returns = [r["env_runners"].get("episode_return_mean") for r in results]
    returns = [r for r in returns if r is not None]
    clusters = json.loads((trial / "clusters.json").read_text()) if (trial / "clusters.json").exists() else {}
    return {
        "example": name,
        "exit_code": proc.returncode,
        "iterations": len(results),
        "env_steps": results[-1]["env_runners"]["num_env_steps_sampled_lifetime"],
        "wall_seconds": round(seconds),
        "first_return": round(returns[0], 3),
        "best_return": round(max(returns), 3),
        "last_return": round(returns[-1], 3),
        "num_clusters": clusters.get("num_clusters"),
        "ari": clusters.get("adjusted_rand_index"),
    }


def main():
    names = sys.argv[1:] or ["adaps_bps", "adaps_lbf", "adaps_crware"]
    storage = Path("/tmp/tuned_examples_runs")
    rows = []
    for name in names:
        rows.append(run(name, storage))
        print(json.dumps(rows[-1]), flush=True)
    lines = ["| example | env steps | wall s | first return | best | last | K | ARI |", "|---|---|---|---|---|---|---|---|"]
    for r in rows:
        ari = "" if r["ari"] is None else f"{r['ari']:.2f}"
        lines.append(f"| {r['example']} | {r['env_steps']} | {r['wall_seconds']} | {r['first_return']} | {r['best_return']} | {r['last_return']} | {r['num_clusters'] or ''} | {ari} |")
    (OUT / "tuned_examples_learning.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
