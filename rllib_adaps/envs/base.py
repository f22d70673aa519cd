"""What every benchmark env of this package shares: config checking and agent types.

Each env is a PettingZoo ``ParallelEnv`` whose agents are named ``agent_0 .. agent_{N-1}``
in a fixed order, and which exposes ``true_agent_types`` (agent id -> int). The true types
are for evaluation only (clustering quality); no training code may read them.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from pettingzoo import ParallelEnv

from rllib_adaps.core.options import did_you_mean


class EnvConfigError(ValueError):
    """A bad ``env_config``: the message names the key and what is accepted."""


def agent_names(num_agents: int) -> list[str]:
    """The agent ids of an env with ``num_agents`` agents, in env order."""
    return [f"agent_{i}" for i in range(num_agents)]


def check_keys(env_name: str, env_config: Mapping[str, Any], allowed: Iterable[str]) -> None:
    """Rejects unknown ``env_config`` keys, suggesting the closest valid one."""
    allowed = sorted(allowed)
    for key in env_config:
        if key in allowed:
            continue
        raise EnvConfigError(
            f"{env_name}: unknown env_config key '{key}'.{did_you_mean(key, allowed)} Valid keys: {allowed}."
        )


def check_int(env_name: str, key: str, value: Any, low: int, high: int | None = None) -> int:
    """Returns ``value`` as an int if it lies in [low, high], else raises."""
    if isinstance(value, bool) or not hasattr(value, "__index__"):
        raise EnvConfigError(f"{env_name}: '{key}' must be an integer, got {value!r}.")
    value = int(value)
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise EnvConfigError(f"{env_name}: '{key}' must be in {bound}, got {value}.")
    return value


def check_float(env_name: str, key: str, value: Any, low: float, high: float | None = None) -> float:
    """Returns ``value`` as a float if it lies in [low, high], else raises."""
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise EnvConfigError(f"{env_name}: '{key}' must be a number, got {value!r}.") from None
    if value < low or (high is not None and value > high):
        bound = f"[{low}, {high}]" if high is not None else f">= {low}"
        raise EnvConfigError(f"{env_name}: '{key}' must be in {bound}, got {value}.")
    return value


def check_choice(env_name: str, key: str, value: Any, choices: Sequence[Any]) -> Any:
    """Returns ``value`` if it is one of ``choices``, else raises."""
    if value not in choices:
        raise EnvConfigError(f"{env_name}: '{key}' must be one of {list(choices)}, got {value!r}.")
    return value


def check_bool(env_name: str, key: str, value: Any) -> bool:
    if not isinstance(value, bool):
        raise EnvConfigError(f"{env_name}: '{key}' must be true or false, got {value!r}.")
    return value


class TypedParallelEnv(ParallelEnv):
    """A ParallelEnv whose agents have a ground-truth type (for evaluation only)."""

    #: agent id -> ground-truth type index. Evaluation only: never read it in training.
    true_agent_types: dict[str, int]
    #: Observation columns that describe the agent itself (its own constant properties, such as
    #: an LBF agent's level), the same for every agent; None: not declared. Identity
    #: pre-training reconstructs these and drops other per-agent constants
    #: (``core.identity.fit_identities``).
    own_observation_features: tuple[int, ...] | None = None
    # Each subclass also defines ``from_config(env_config) -> env``: the validated
    # constructor that the RLlib registry calls with ``config.env_config``.
