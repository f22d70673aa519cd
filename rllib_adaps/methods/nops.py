"""NoPS: one network per agent, held as N parameter slices of the one module (slice i = agent i)."""

from rllib_adaps.methods.base import SharingMethod


class NoPS(SharingMethod):
    name = "nops"
    title = "NoPS"

    def module_config(self):
        return {**super().module_config(), "num_slices": self.num_agents, "agent_slices": list(range(self.num_agents))}
