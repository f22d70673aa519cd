"""How much of the network AdaPS's masks switch off, against lambda.

    python bench/mask_fraction.py > docs/results/mask_fraction.txt

``cluster_masks`` on 3 cluster centres drawn from a standard normal (z_dim 10; the mapping
network standardises centres over the clusters, so their scale does not matter), hidden layers
64 + 64, 200 draws of centres and mapping-network seed: the share of neurons masked per cluster
and the share that differ between two clusters' masks.
"""

from __future__ import annotations

import numpy as np

from rllib_adaps.core.masks import cluster_masks


def main(draws: int = 200) -> None:
    print(f"# python bench/mask_fraction.py   (3 clusters, z_dim 10, hidden 64+64, {draws} draws)")
    print(f"{'lambda':>6} {'masked':>8} {'5%..95%':>14} {'differ between clusters':>24}")
    for threshold in (0.2, 0.5, 0.8):
        masked, differ = [], []
        for seed in range(draws):
            centres = np.random.default_rng(seed).normal(size=(3, 10))
            masks = np.concatenate(cluster_masks(centres, [64, 64], threshold, seed), axis=1)
            masked.append(1.0 - masks.mean())
            differ.append(np.mean([(masks[i] != masks[j]).mean() for i in range(3) for j in range(i + 1, 3)]))
        low, high = np.percentile(masked, [5, 95])
        print(f"{threshold:>6} {np.mean(masked):>8.3f} {f'{low:.3f}..{high:.3f}':>14} {np.mean(differ):>24.3f}")


if __name__ == "__main__":
    main()
