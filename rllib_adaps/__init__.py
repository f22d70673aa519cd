"""rllib-adaps: adaptive (AdaPS) and selective (SePS) parameter sharing for RLlib.

Importing the package registers its envs (``lbf``, ``crware``, ``bps``) with Ray Tune when Ray
is already imported (``from ray.rllib... import ...`` first, as usual); otherwise at the first
use of any name of the package. Names are imported on first use, so the ``rllib`` command's
help pages answer without importing Ray.
"""

import importlib
import sys

__version__ = "0.2.0"

_EXPORTS = {
    "AdaPSModule": "rllib_adaps.engine",
    "ParameterSharingModule": "rllib_adaps.engine",
    "AgentIndexConnector": "rllib_adaps.connectors",
    "AgentIndexObservations": "rllib_adaps.connectors",
    "AgentModuleMapping": "rllib_adaps.mapping",
    "CheckpointMismatchError": "rllib_adaps.multi_module",
    "FastPathEnvRunner": "rllib_adaps.fast_path",
    "SlotVectorEnv": "rllib_adaps.fast_path",
    "sharing_module_id": "rllib_adaps.module_ids",
    "IdentityPretrainingCallback": "rllib_adaps.callback",
    "SharingCallback": "rllib_adaps.callback",
    "METHODS": "rllib_adaps.methods",
    "PretrainingOptions": "rllib_adaps.methods",
    "SharingOptionError": "rllib_adaps.methods",
    "get_method": "rllib_adaps.methods",
    "a2c_settings": "rllib_adaps.sharing",
    "configure_sharing": "rllib_adaps.sharing",
    "register_envs": "rllib_adaps.envs",
}
__all__ = sorted(_EXPORTS)
_registered = False


def _register_once() -> None:
    global _registered
    if not _registered:
        _registered = True
        importlib.import_module("rllib_adaps.envs").register_envs()


def __getattr__(name: str):
    if name not in _EXPORTS:
        raise AttributeError(f"module 'rllib_adaps' has no attribute {name!r}")
    _register_once()
    value = getattr(importlib.import_module(_EXPORTS[name]), name)
    globals()[name] = value
    return value


def __dir__():
    return sorted([*globals(), *_EXPORTS])


if "ray" in sys.modules:
    _register_once()
