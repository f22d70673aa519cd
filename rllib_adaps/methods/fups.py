"""FuPS: one network for all agents; agents are not told apart at all."""

from rllib_adaps.methods.base import SharingMethod


class FuPS(SharingMethod):
    name = "fups"
    title = "FuPS"
