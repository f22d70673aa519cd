"""``clusters.json`` and ``clusters.png``: what identity pre-training found, for a researcher.

The picture is a 2-D projection (PCA) of the agents' identity vectors, coloured by cluster
and marked by ground-truth type where the env exposes one.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Dict, Optional, Sequence

import numpy as np

MARKERS = "o^sDv<>pPX*hH"


def project_2d(identities: np.ndarray) -> np.ndarray:
    """PCA to two dimensions (pads with zeros when there is less to show)."""
    centred = identities - identities.mean(axis=0)
    if len(identities) < 2 or not np.any(centred):
        return np.zeros((len(identities), 2))
    _, _, vt = np.linalg.svd(centred, full_matrices=False)
    points = centred @ vt[:2].T
    return np.pad(points, ((0, 0), (0, 2 - points.shape[1])))


def write_cluster_artifacts(
    directory: str | Path,
    agent_ids: Sequence[str],
    identities: np.ndarray,
    labels: np.ndarray,
    summary: Dict[str, Any],
    true_types: Optional[Dict[str, int]] = None,
) -> tuple[Path, Path]:
    """Writes ``clusters.json`` and ``clusters.png`` into ``directory``; returns their paths."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "agent_to_cluster": {a: int(k) for a, k in zip(agent_ids, labels)},
        "identities": {a: [float(x) for x in v] for a, v in zip(agent_ids, identities)},
        "num_clusters": int(summary["num_clusters"]),
        "davies_bouldin": summary.get("davies_bouldin", {}),
        "adjusted_rand_index": summary.get("adjusted_rand_index"),
        "true_types": dict(true_types) if true_types else None,
        "vae_loss": summary.get("vae_loss"),
        "env_steps_at_fit": summary.get("env_steps_at_fit"),
    }
    json_path = directory / "clusters.json"
    json_path.write_text(json.dumps(record, indent=2))

    points = project_2d(np.asarray(identities, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(6, 5))
    cmap = plt.get_cmap("tab10")
    types = [true_types[a] for a in agent_ids] if true_types else [0] * len(agent_ids)
    for type_index in sorted(set(types)):
        rows = [i for i, t in enumerate(types) if t == type_index]
        ax.scatter(
            points[rows, 0], points[rows, 1], c=[cmap(int(labels[i]) % 10) for i in rows],
            marker=MARKERS[type_index % len(MARKERS)], s=70, edgecolors="black",
            label=f"true type {type_index}" if true_types else None,
        )
    for i, agent in enumerate(agent_ids):
        ax.annotate(agent.replace("agent_", ""), points[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ari = summary.get("adjusted_rand_index")
    title = f"{len(agent_ids)} agents, K={summary['num_clusters']} clusters (colour)"
    if ari is not None:
        title += f", ARI vs true types (marker) {ari:.2f}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("identity PC 1")
    ax.set_ylabel("identity PC 2")
    if true_types:
        ax.legend(fontsize=7, loc="best")
    fig.tight_layout()
    png_path = directory / "clusters.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
