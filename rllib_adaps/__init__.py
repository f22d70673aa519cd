"""rllib-adaps: adaptive (AdaPS) and selective (SePS) parameter sharing for RLlib.

Importing the package registers its envs (``lbf``, ``crware``, ``bps``) with Ray Tune.
"""

from rllib_adaps.callback import IdentityPretrainingCallback, PretrainingOptions
from rllib_adaps.connectors import AgentIndexConnector, AgentIndexObservations
from rllib_adaps.envs import register_envs
from rllib_adaps.mapping import AgentModuleMapping
from rllib_adaps.module import AdaPSModule
from rllib_adaps.multi_module import CheckpointMismatchError, SharingMultiRLModule
from rllib_adaps.sharing import METHODS, a2c_settings, configure_sharing

__version__ = "0.1.0"

register_envs()

__all__ = [
    "AdaPSModule",
    "AgentIndexConnector",
    "AgentIndexObservations",
    "AgentModuleMapping",
    "CheckpointMismatchError",
    "IdentityPretrainingCallback",
    "METHODS",
    "PretrainingOptions",
    "SharingMultiRLModule",
    "a2c_settings",
    "configure_sharing",
    "register_envs",
]
