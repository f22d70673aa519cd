"""rllib-adaps: adaptive (AdaPS) and selective (SePS) parameter sharing for RLlib.

Importing the package registers its envs (``lbf``, ``crware``, ``bps``) with Ray Tune.
"""

from rllib_adaps.callback import IdentityPretrainingCallback, SharingCallback
from rllib_adaps.connectors import AgentIndexConnector, AgentIndexObservations
from rllib_adaps.engine import AdaPSModule, ParameterSharingModule
from rllib_adaps.envs import register_envs
from rllib_adaps.mapping import AgentModuleMapping
from rllib_adaps.methods import METHODS, PretrainingOptions, SharingOptionError, get_method
from rllib_adaps.multi_module import CheckpointMismatchError, SharingMultiRLModule
from rllib_adaps.sharing import a2c_settings, configure_sharing

__version__ = "0.2.0"

register_envs()

__all__ = [
    "AdaPSModule",
    "AgentIndexConnector",
    "AgentIndexObservations",
    "AgentModuleMapping",
    "CheckpointMismatchError",
    "IdentityPretrainingCallback",
    "METHODS",
    "ParameterSharingModule",
    "PretrainingOptions",
    "SharingCallback",
    "SharingMultiRLModule",
    "SharingOptionError",
    "a2c_settings",
    "configure_sharing",
    "get_method",
    "register_envs",
]
