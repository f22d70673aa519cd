"""The one module's id on each path, and the one way to reach the engine module on any actor.

A run set up by ``configure_sharing`` has exactly one RLModule, the sharing engine. Its id
depends on how RLlib runs the env:

- the multi-agent path (``MultiAgentEnvRunner``, one module for every agent id): ``shared``;
- the fast path (``rllib_adaps.rllib.fast_path``: agents as slots of RLlib's single-agent
  ``SingleAgentEnvRunner``): RLlib's single-agent id, ``default_policy``. RLlib's
  single-agent code (Learner connectors, EnvRunner state, metrics) hard-codes that id, so the
  fast path keeps it rather than patching RLlib.

Everything in this package that names the module goes through ``sharing_module_id`` (from a
config or an Algorithm) and ``engine_module`` (from a Learner or an EnvRunner of either kind).
"""

from __future__ import annotations

from typing import Any, Optional

from ray.rllib.core import DEFAULT_MODULE_ID

#: The module id on the multi-agent path.
SHARED_MODULE_ID = "shared"
#: The module id on the fast path (RLlib's single-agent id).
FAST_PATH_MODULE_ID = DEFAULT_MODULE_ID
MODULE_IDS = (SHARED_MODULE_ID, FAST_PATH_MODULE_ID)


def sharing_module_id(config_or_algo: Any) -> str:
    """The engine's module id in a config set up by ``configure_sharing`` (or its Algorithm)."""
    config = getattr(config_or_algo, "config", None) or config_or_algo
    return SHARED_MODULE_ID if config.is_multi_agent else FAST_PATH_MODULE_ID


def engine_module(holder: Any, module_id: Optional[str] = None):
    """The engine module of a Learner or an EnvRunner (multi-agent or fast path), unwrapped.

    Learners and multi-agent EnvRunners hold a ``MultiRLModule`` (looked up by ``module_id``, or
    the only module it holds when ``module_id`` is None); the single-agent EnvRunner of the fast
    path holds the module itself. Returns None where there is no such module.
    """
    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

    module = getattr(holder, "module", None)
    if module is None:
        return None
    if isinstance(module, MultiRLModule):
        if module_id is None:
            keys = list(module.keys())
            module_id = keys[0] if len(keys) == 1 else None
        if module_id is None or module_id not in module:
            return None
        module = module[module_id]
    return module.unwrapped() if hasattr(module, "unwrapped") else module
