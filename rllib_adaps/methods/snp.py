"""SNP-PS (Kim & Sung 2023): one network; each agent gets a fixed random pruning mask."""

import dataclasses
from typing import ClassVar, Optional, Sequence

import numpy as np

from rllib_adaps.core.layers import MASKABLE_NETWORKS, EngineLayout
from rllib_adaps.core.masks import random_pruning_masks
from rllib_adaps.core.options import SharingOptionError
from rllib_adaps.methods.base import InstallPlan, MethodOptions, SharingMethod, _check_int, _check_masked_networks


@dataclasses.dataclass(frozen=True)
class SNPOptions(MethodOptions):
    pruning_rate: float = 0.5  # share of each hidden layer's neurons pruned per agent, in [0, 1)
    mask_seed: Optional[int] = None  # None: derived from the run's seed
    masked_networks: Sequence[str] = MASKABLE_NETWORKS

    SEED_FIELDS: ClassVar[tuple] = ("mask_seed",)

    def __post_init__(self):
        if isinstance(self.pruning_rate, bool) or not isinstance(self.pruning_rate, (int, float)) or not 0.0 <= self.pruning_rate < 1.0:
            raise SharingOptionError(f"pruning_rate must be a number in [0, 1), got {self.pruning_rate!r}.")
        _check_int(self, "mask_seed", 0, allow_none=True)
        _check_masked_networks(self)


class SNPPS(SharingMethod):
    name = "snp"
    title = "SNP-PS"
    Options = SNPOptions

    def layout(self, hidden_sizes):
        """Row i + 1 of the mask table is agent i's fixed random mask."""
        o, n = self.options, self.num_agents
        return EngineLayout(mask_rows=n + 1, masked_networks=tuple(o.masked_networks), mask_table=self._mask_table(hidden_sizes),
                            agent_mask=np.arange(1, n + 1))

    def _mask_table(self, hidden_sizes):
        layers = random_pruning_masks(self.num_agents, hidden_sizes, self.options.pruning_rate, self.resolved("mask_seed"))
        return np.concatenate([np.ones((1, sum(hidden_sizes)), np.float32), np.concatenate(layers, axis=1)])

    def initial_plan(self, hidden_sizes):
        """The masks drawn from the run's seed, which the module could not know when it was built."""
        return InstallPlan(agent_cluster=np.full(self.num_agents, -1), mask_table=self._mask_table(hidden_sizes),
                           agent_mask=np.arange(1, self.num_agents + 1))
