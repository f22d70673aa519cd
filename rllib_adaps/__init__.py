"""rllib-adaps: adaptive (AdaPS) and selective (SePS) parameter sharing for RLlib."""

from rllib_adaps.envs import register_envs

__version__ = "0.1.0"

register_envs()

__all__ = ["register_envs"]
