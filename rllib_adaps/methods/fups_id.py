"""FuPS+id: one network for all agents, with the one-hot agent index appended to its input."""

from rllib_adaps.methods.base import SharingMethod


class FuPSWithId(SharingMethod):
    name = "fups_id"
    title = "FuPS+id"

    def module_config(self):
        return {**super().module_config(), "agent_id_input": True}
