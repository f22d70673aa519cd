"""SNP-PS (Kim & Sung 2023): one network; each agent gets a fixed random pruning mask."""

import dataclasses
from typing import Sequence

import numpy as np

from rllib_adaps.core.layers import MASKABLE_NETWORKS, EngineLayout
from rllib_adaps.core.masks import random_pruning_masks
from rllib_adaps.core.options import SharingOptionError
from rllib_adaps.methods.base import MethodOptions, SharingMethod, _check_int, _check_masked_networks


@dataclasses.dataclass(frozen=True)
class SNPOptions(MethodOptions):
    pruning_rate: float = 0.5  # share of each hidden layer's neurons pruned per agent, in [0, 1)
    mask_seed: int = 0
    masked_networks: Sequence[str] = MASKABLE_NETWORKS

    def __post_init__(self):
        if isinstance(self.pruning_rate, bool) or not isinstance(self.pruning_rate, (int, float)) or not 0.0 <= self.pruning_rate < 1.0:
            raise SharingOptionError(f"pruning_rate must be a number in [0, 1), got {self.pruning_rate!r}.")
        _check_int(self, "mask_seed", 0)
        _check_masked_networks(self)


class SNPPS(SharingMethod):
    name = "snp"
    title = "SNP-PS"
    Options = SNPOptions

    def layout(self, hidden_sizes):
        """Row i + 1 of the mask table is agent i's fixed random mask."""
        o, n = self.options, self.num_agents
        layers = random_pruning_masks(n, hidden_sizes, o.pruning_rate, o.mask_seed)
        table = np.concatenate([np.ones((1, sum(hidden_sizes)), np.float32), np.concatenate(layers, axis=1)])
        return EngineLayout(mask_rows=n + 1, masked_networks=tuple(o.masked_networks), mask_table=table,
                            agent_mask=np.arange(1, n + 1))
