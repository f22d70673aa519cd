"""NoPS: one network per agent, held as N parameter slices of the one module (slice i = agent i)."""

from rllib_adaps.core.layers import EngineLayout
from rllib_adaps.methods.base import SharingMethod


class NoPS(SharingMethod):
    name = "nops"
    title = "NoPS"

    def layout(self, hidden_sizes):
        return EngineLayout(num_slices=self.num_agents, agent_slices=tuple(range(self.num_agents)))
