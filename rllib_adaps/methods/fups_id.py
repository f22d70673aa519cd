"""FuPS+id: one network for all agents, with the one-hot agent index appended to its input."""

from rllib_adaps.core.layers import EngineLayout
from rllib_adaps.methods.base import SharingMethod


class FuPSWithId(SharingMethod):
    name = "fups_id"
    title = "FuPS+id"

    def layout(self, hidden_sizes):
        return EngineLayout(agent_id_input=True)
