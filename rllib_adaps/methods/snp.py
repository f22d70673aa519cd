"""SNP-PS (Kim & Sung 2023): one network; each agent gets a fixed random pruning mask."""

import dataclasses
from typing import Sequence

from rllib_adaps.engine import MASKABLE_NETWORKS
from rllib_adaps.methods.base import MethodOptions, SharingMethod, SharingOptionError, check_masked_networks


@dataclasses.dataclass
class SNPOptions(MethodOptions):
    pruning_rate: float = 0.5  # share of each hidden layer's neurons pruned per agent, in [0, 1)
    mask_seed: int = 0
    masked_networks: Sequence[str] = MASKABLE_NETWORKS

    def validate(self, num_agents):
        if not 0.0 <= float(self.pruning_rate) < 1.0:
            raise SharingOptionError(f"pruning_rate must be in [0, 1), got {self.pruning_rate}.")
        check_masked_networks(self.masked_networks)
        return self


class SNPPS(SharingMethod):
    name = "snp"
    title = "SNP-PS"
    Options = SNPOptions

    def module_config(self):
        o = self.options
        return {**super().module_config(), "masking": "random", "mask_rows": self.num_agents + 1,
                "pruning_rate": o.pruning_rate, "mask_seed": o.mask_seed, "masked_networks": list(o.masked_networks)}
