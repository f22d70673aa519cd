"""AdaPS (Li et al.): identity pre-training, k-means, and a fixed random mapping network that
turns each cluster centre into a binary neuron mask over one shared network.

Mask rows live in the module's ``mask_table`` (row 0 all ones: no mask; row k + 1: cluster
k); ``agent_mask`` points each agent at its cluster's row.
"""

import dataclasses
from typing import Sequence

import numpy as np

from rllib_adaps.engine import MASKABLE_NETWORKS
from rllib_adaps.masks import cluster_masks
from rllib_adaps.methods.base import (
    InstallPlan,
    PretrainingOptions,
    SharingMethod,
    check_masked_networks,
    check_threshold_option,
)


@dataclasses.dataclass
class AdaPSOptions(PretrainingOptions):
    mask_threshold: float = 0.2  # lambda: a neuron is kept where sigmoid(f_m(z_k)) > lambda
    mask_seed: int = 0  # seed of the fixed random mapping network f_m
    masked_networks: Sequence[str] = MASKABLE_NETWORKS

    def validate(self, num_agents):
        super().validate(num_agents)
        check_threshold_option(self.mask_threshold)
        check_masked_networks(self.masked_networks)
        return self


class AdaPS(SharingMethod):
    name = "adaps"
    title = "AdaPS"
    Options = AdaPSOptions
    pretrains = True

    def module_config(self):
        o = self.options
        return {**super().module_config(), "masking": "cluster", "mask_rows": o.max_clusters(self.num_agents) + 1,
                "mask_threshold": o.mask_threshold, "mask_seed": o.mask_seed, "masked_networks": list(o.masked_networks)}

    def plan_install(self, fit, agent_slice, hidden_sizes):
        layers = cluster_masks(fit.centres, hidden_sizes, self.options.mask_threshold, self.options.mask_seed)
        rows = np.concatenate([np.ones((1, sum(hidden_sizes)), np.float32), np.concatenate(layers, axis=1)])
        labels = np.asarray(fit.labels)
        return InstallPlan(agent_cluster=labels, mask_table=rows, agent_mask=labels + 1)
