"""The three benchmark environments of the AdaPS / SePS papers, registered for RLlib.

| name     | env                                          | class                   |
|----------|----------------------------------------------|-------------------------|
| ``lbf``    | Level-Based Foraging with persistent levels  | ``PersistentLevelForaging`` |
| ``crware`` | Coloured Multi-Robot Warehouse               | ``ColouredWarehouse``       |
| ``bps``    | Blind-particle Spread                        | ``BlindParticleSpread``     |
| ``roles``  | Role Particles (test env for identity pre-training: roles differ in observation size, reward, dynamics) | ``RoleParticles`` |

Use them in RLlib as ``config.environment("bps", env_config={"preset": "v2"})``.
"""

from __future__ import annotations

import importlib
from typing import Any, Callable, Mapping

from rllib_adaps.envs.base import EnvConfigError, TypedParallelEnv, agent_names
from rllib_adaps.envs.rllib_env import OrderedParallelEnv

#: Short registered name -> (module, class). Imported on first use, so that importing the
#: package does not pull in lbforaging and rware.
ENV_CLASSES: dict[str, tuple[str, str]] = {
    "lbf": ("rllib_adaps.envs.lbf", "PersistentLevelForaging"),
    "crware": ("rllib_adaps.envs.coloured_rware", "ColouredWarehouse"),
    "bps": ("rllib_adaps.envs.bps", "BlindParticleSpread"),
    "roles": ("rllib_adaps.envs.roles", "RoleParticles"),
}
_CLASS_TO_NAME = {cls: name for name, (_, cls) in ENV_CLASSES.items()}


def env_class(name: str) -> type:
    """The env class registered under the short ``name``."""
    if name not in ENV_CLASSES:
        raise EnvConfigError(f"Unknown env '{name}'. Known envs: {sorted(ENV_CLASSES)}.")
    module, cls = ENV_CLASSES[name]
    return getattr(importlib.import_module(module), cls)


def make_parallel_env(name: str, env_config: Mapping[str, Any] | None = None) -> TypedParallelEnv:
    """Builds the PettingZoo ParallelEnv registered under ``name``."""
    return env_class(name).from_config(dict(env_config or {}))


def __getattr__(attr: str):
    if attr in _CLASS_TO_NAME:
        return env_class(_CLASS_TO_NAME[attr])
    raise AttributeError(f"module {__name__!r} has no attribute {attr!r}")


def env_creator(name: str) -> Callable[[Mapping[str, Any]], OrderedParallelEnv]:
    """The RLlib env creator for ``name`` (takes ``env_config``, returns a MultiAgentEnv)."""

    def create(env_config: Mapping[str, Any]) -> OrderedParallelEnv:
        return OrderedParallelEnv(make_parallel_env(name, env_config))

    return create


def register_envs() -> None:
    """Registers every env of this package with Ray Tune under its short name."""
    from ray.tune.registry import register_env

    for name in ENV_CLASSES:
        register_env(name, env_creator(name))


__all__ = [
    "BlindParticleSpread",
    "ColouredWarehouse",
    "ENV_CLASSES",
    "env_class",
    "EnvConfigError",
    "OrderedParallelEnv",
    "PersistentLevelForaging",
    "RoleParticles",
    "TypedParallelEnv",
    "agent_names",
    "env_creator",
    "make_parallel_env",
    "register_envs",
]
