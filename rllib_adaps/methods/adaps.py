"""AdaPS (Li et al.): identity pre-training, k-means, and a fixed random mapping network that
turns each cluster centre into a binary neuron mask over one shared network.

Mask rows live in the module's ``mask_table`` (row 0 all ones: no mask; row k + 1: cluster
k); ``agent_mask`` points each agent at its cluster's row.
"""

import dataclasses
from typing import ClassVar, Optional, Sequence

import numpy as np

from rllib_adaps.core.layers import MASKABLE_NETWORKS, EngineLayout
from rllib_adaps.core.masks import check_threshold, cluster_masks
from rllib_adaps.core.options import SharingOptionError
from rllib_adaps.methods.base import InstallPlan, PretrainingOptions, SharingMethod, _check_int, _check_masked_networks


@dataclasses.dataclass(frozen=True)
class AdaPSOptions(PretrainingOptions):
    mask_threshold: float = 0.2  # lambda: a neuron is kept where sigmoid(f_m(z_k)) > lambda
    mask_seed: Optional[int] = None  # seed of the fixed random mapping network f_m; None: from the run's seed
    masked_networks: Sequence[str] = MASKABLE_NETWORKS

    SEED_FIELDS: ClassVar[tuple] = ("seed", "mask_seed")

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.mask_threshold, bool) or not isinstance(self.mask_threshold, (int, float)):
            raise SharingOptionError(f"mask_threshold must be a number in (0, 1), got {self.mask_threshold!r}.")
        try:
            check_threshold(self.mask_threshold)
        except ValueError as err:
            raise SharingOptionError(f"mask_threshold: {err}") from None
        _check_int(self, "mask_seed", 0, allow_none=True)
        _check_masked_networks(self)


class AdaPS(SharingMethod):
    name = "adaps"
    title = "AdaPS"
    Options = AdaPSOptions
    pretrains = True

    def layout(self, hidden_sizes):
        """Room for a mask row per possible cluster; every agent unmasked until the fit."""
        return EngineLayout(mask_rows=self.options.max_clusters(self.num_agents, self.space_groups) + 1,
                            masked_networks=tuple(self.options.masked_networks))

    def plan_install(self, fit, agent_slice, hidden_sizes):
        layers = cluster_masks(fit.centres, hidden_sizes, self.options.mask_threshold, self.resolved("mask_seed"))
        rows = np.concatenate([np.ones((1, sum(hidden_sizes)), np.float32), np.concatenate(layers, axis=1)])
        labels = np.asarray(fit.labels)
        return InstallPlan(agent_cluster=labels, mask_table=rows, agent_mask=labels + 1)
