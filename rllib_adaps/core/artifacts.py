"""``clusters.json`` and ``clusters.png``: what identity pre-training found, for a researcher.

The picture is a 2-D projection (PCA) of the agents' identity vectors: the fill colour is the
cluster, the marker shape the ground-truth type where the env exposes one; one legend for each.
``clusters.json`` also says how K was chosen: the criterion, the candidate K values with their
scores, which candidates were excluded and why, and the K chosen.
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


def k_selection_record(summary: Dict[str, Any]) -> Dict[str, Any]:
    """How K was chosen, from ``summary["k_selection"]`` (criterion, scores, excluded, chosen)."""
    selection = summary["k_selection"]
    scores = {str(k): float(v) for k, v in (selection.get("scores") or {}).items()}
    excluded = {str(k): str(v) for k, v in (selection.get("excluded") or {}).items()}
    chosen = int(selection["chosen"])
    return {
        "criterion": str(selection["criterion"]),
        "candidates": sorted({int(k) for k in scores} | {int(k) for k in excluded} | {chosen}),
        "scores": scores,
        "excluded": excluded,
        "chosen": chosen,
    }


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
    from matplotlib.lines import Line2D

    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    record = {
        "agent_to_cluster": {a: int(k) for a, k in zip(agent_ids, labels)},
        "identities": {a: [float(x) for x in v] for a, v in zip(agent_ids, identities)},
        "num_clusters": int(summary["num_clusters"]),
        "k_selection": k_selection_record(summary),
        "adjusted_rand_index": summary.get("adjusted_rand_index"),
        "true_types": dict(true_types) if true_types else None,
        "vae_loss": summary.get("vae_loss"),
        "env_steps_at_fit": summary.get("env_steps_at_fit"),
    }
    json_path = directory / "clusters.json"
    json_path.write_text(json.dumps(record, indent=2))

    points = project_2d(np.asarray(identities, dtype=np.float64))
    fig, ax = plt.subplots(figsize=(7.5, 5))
    cmap = plt.get_cmap("tab10")
    labels = [int(k) for k in labels]
    types = [int(true_types[a]) for a in agent_ids] if true_types else [0] * len(agent_ids)
    for type_index in sorted(set(types)):
        rows = [i for i, t in enumerate(types) if t == type_index]
        ax.scatter(points[rows, 0], points[rows, 1], c=[cmap(labels[i] % 10) for i in rows],
                   marker=MARKERS[type_index % len(MARKERS)], s=70, edgecolors="black")
    for i, agent in enumerate(agent_ids):
        ax.annotate(agent.replace("agent_", ""), points[i], fontsize=7, xytext=(3, 3), textcoords="offset points")
    ari = summary.get("adjusted_rand_index")
    title = f"{len(agent_ids)} agents, K={summary['num_clusters']} clusters (colour)"
    if ari is not None:
        title += f", ARI vs true types (marker) {ari:.2f}"
    ax.set_title(title, fontsize=9)
    ax.set_xlabel("identity PC 1")
    ax.set_ylabel("identity PC 2")
    # Two legends: clusters by fill colour (round patches), true types by marker shape drawn in
    # a neutral colour, so that a type's marker is never read as a cluster's colour.
    sizes = np.bincount(labels, minlength=max(labels) + 1)
    cluster_handles = [
        Line2D([], [], linestyle="", marker="o", markersize=8, markerfacecolor=cmap(k % 10), markeredgecolor="black",
               label=f"cluster {k} ({sizes[k]} agents)")
        for k in range(len(sizes)) if sizes[k]
    ]
    cluster_legend = ax.legend(handles=cluster_handles, title="cluster (colour)", fontsize=7, title_fontsize=8,
                               loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0)
    if true_types:
        ax.add_artist(cluster_legend)
        type_handles = [
            Line2D([], [], linestyle="", marker=MARKERS[t % len(MARKERS)], markersize=8, markerfacecolor="white",
                   markeredgecolor="black", label=f"type {t} ({types.count(t)} agents)")
            for t in sorted(set(types))
        ]
        ax.legend(handles=type_handles, title="true type (marker)", fontsize=7, title_fontsize=8,
                  loc="lower left", bbox_to_anchor=(1.02, 0.0), borderaxespad=0.0)
    fig.tight_layout()
    png_path = directory / "clusters.png"
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return json_path, png_path
