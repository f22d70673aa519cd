"""rllib-adaps: adaptive (AdaPS) and selective (SePS) parameter sharing for RLlib.

Layers, each importing only those below it:
- ``core``: the math (grouped layers, neuron masks, identity VAE, clustering, option parsing),
  no Ray;
- ``methods`` and ``envs``: the six sharing methods with ``SharingSpec``, and the benchmark envs;
- ``rllib``: the RLModule, its callback, connectors, the fast path, ``configure_sharing``;
- ``app``: the ``rllib`` command, experiment files, evaluation.

Importing the package registers its envs (``lbf``, ``crware``, ``bps``) with Ray Tune when Ray
is already imported (``from ray.rllib... import ...`` first, as usual); otherwise at the first
use of any name of the package. Names are imported on first use, so the ``rllib`` command's
help pages answer without importing Ray.
"""

import importlib
import logging
import sys

__version__ = "0.3.0"

# A library leaves logging to the application (the ``rllib`` command sets up its own output).
logging.getLogger(__name__).addHandler(logging.NullHandler())

_EXPORTS = {
    "AdaPSModule": "rllib_adaps.rllib.module",
    "ParameterSharingModule": "rllib_adaps.rllib.module",
    "AgentIndexConnector": "rllib_adaps.rllib.connectors",
    "AgentIndexObservations": "rllib_adaps.rllib.connectors",
    "AgentModuleMapping": "rllib_adaps.rllib.mapping",
    "CheckpointMismatchError": "rllib_adaps.rllib.checkpoints",
    "FastPathEnvRunner": "rllib_adaps.rllib.fast_path",
    "SlotVectorEnv": "rllib_adaps.rllib.fast_path",
    "sharing_module_id": "rllib_adaps.rllib.module_ids",
    "SharingCallback": "rllib_adaps.rllib.callback",
    "a2c_settings": "rllib_adaps.rllib.configure",
    "configure_sharing": "rllib_adaps.rllib.configure",
    "PLAIN_LOSS": "rllib_adaps.rllib.configure",
    "TestReturns": "rllib_adaps.rllib.test_returns",
    "with_test_returns": "rllib_adaps.rllib.test_returns",
    "METHODS": "rllib_adaps.methods",
    "SharingSpec": "rllib_adaps.methods",
    "PretrainingOptions": "rllib_adaps.methods",
    "AdaPSOptions": "rllib_adaps.methods",
    "SNPOptions": "rllib_adaps.methods",
    "VAEOptions": "rllib_adaps.methods",
    "SharingOptionError": "rllib_adaps.methods",
    "get_method": "rllib_adaps.methods",
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
