"""What every sharing method is made of: its options, its engine layout, its install plan.

A method never touches RLlib: it says which engine layout it needs (``layout``) and, for
methods that pre-train identities, which routing tables and slice copies a fit turns into
(``plan_install``). ``SharingCallback`` applies that plan on every Learner and EnvRunner
(``apply_plan``), so every copy gets exactly the same tables.
"""

from __future__ import annotations

import dataclasses
import zlib
from typing import Any, ClassVar, List, Optional, Sequence

import numpy as np

from rllib_adaps.core.identity import DEFAULT_MIN_TRANSITIONS_PER_AGENT, IdentityResult, VAEOptions
from rllib_adaps.core.layers import MASKABLE_NETWORKS, EngineLayout
from rllib_adaps.core.options import SharingOptionError


def _check_int(options, name: str, low: int, allow_none: bool = False) -> None:
    value = getattr(options, name)
    if value is None and allow_none:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < low:
        bound = f"an int >= {low}" + (" or None" if allow_none else "")
        raise SharingOptionError(f"{name} must be {bound}, got {value!r}.")


def _check_masked_networks(options) -> None:
    if isinstance(options.masked_networks, str):
        raise SharingOptionError(f"masked_networks must be a list such as ['actor'], got the string {options.masked_networks!r}.")
    object.__setattr__(options, "masked_networks", tuple(options.masked_networks))
    if not options.masked_networks or set(options.masked_networks) - set(MASKABLE_NETWORKS):
        raise SharingOptionError(f"masked_networks must be a non-empty subset of {MASKABLE_NETWORKS}, got {list(options.masked_networks)}.")


def derive_seed(run_seed: int, part: str) -> int:
    """The seed of one random part (``"seed"``, ``"mask_seed"``) of a run seeded ``run_seed``.

    Each part gets its own stream, so that fixing one part does not move the others.
    """
    return int(np.random.SeedSequence([int(run_seed), zlib.crc32(part.encode())]).generate_state(1)[0])


@dataclasses.dataclass(frozen=True)
class MethodOptions:
    """Options of a method without options of its own (FuPS, FuPS+id, NoPS)."""

    #: Options that seed a random part of the method; None (the default) derives it from the
    #: run's seed (``with_run_seed``), an int fixes it.
    SEED_FIELDS: ClassVar[tuple] = ()

    def with_run_seed(self, run_seed: int) -> "MethodOptions":
        """These options with every seed left open derived from ``run_seed``."""
        open_seeds = {name: derive_seed(run_seed, name) for name in self.SEED_FIELDS if getattr(self, name) is None}
        return dataclasses.replace(self, **open_seeds) if open_seeds else self

    def resolved_seeds(self) -> dict:
        return {name: getattr(self, name) for name in self.SEED_FIELDS}

    def check_agents(self, num_agents: int) -> None:
        """Checks that depend on the env's agents (known once the env is read)."""


@dataclasses.dataclass(frozen=True)
class PretrainingOptions(MethodOptions):
    """Identity pre-training: its schedule, the VAE and the clustering."""

    #: Env steps of shared training (every agent on the shared parameters, no masks or groups)
    #: before the collection. 0, the AdaPS paper's timeline: collect with the initial shared
    #: policy, fit, install, then train. SePS's reference code trains first (e.g. 20_000).
    shared_training_env_steps: int = 0
    identity_env_steps: int = 3_000  # env steps sampled for the VAE's transitions
    min_transitions_per_agent: int = DEFAULT_MIN_TRANSITIONS_PER_AGENT  # collect more until every agent has this many
    num_clusters: Optional[int] = None  # None: chosen automatically (silhouette over K = 2..N-1)
    recluster_every_env_steps: Optional[int] = None  # None: cluster once
    seed: Optional[int] = None  # VAE init and batches, k-means; None: derived from the run's seed
    vae: VAEOptions = VAEOptions()

    SEED_FIELDS: ClassVar[tuple] = ("seed",)

    def __post_init__(self):
        _check_int(self, "shared_training_env_steps", 0)
        for name in ("identity_env_steps", "min_transitions_per_agent"):
            _check_int(self, name, 1)
        _check_int(self, "num_clusters", 1, allow_none=True)
        _check_int(self, "recluster_every_env_steps", 1, allow_none=True)
        _check_int(self, "seed", 0, allow_none=True)

    def check_agents(self, num_agents: int) -> None:
        if self.num_clusters is not None and self.num_clusters > num_agents:
            raise SharingOptionError(f"num_clusters (K) must be in [1, {num_agents}] (the number of agents), got {self.num_clusters}.")
        if self.num_clusters is None and num_agents < 3:
            raise SharingOptionError(f"With {num_agents} agents K cannot be chosen automatically (K in 2..N-1); set num_clusters.")

    def max_clusters(self, num_agents: int, space_groups: Optional[Sequence[int]] = None) -> int:
        """The most clusters a fit can return: room to allocate for them in advance.

        Agents with different observation or action spaces never share a cluster, so a fixed
        K can end up larger: each space group holds at most min(K, its size) clusters.
        """
        if self.num_clusters is None:
            return num_agents
        if space_groups is None:
            return self.num_clusters
        sizes = np.bincount(np.asarray(space_groups, dtype=np.int64))
        return int(np.minimum(sizes[sizes > 0], self.num_clusters).sum())


@dataclasses.dataclass
class InstallPlan:
    """Tables (and slice copies) that a fit turns into; identical for every copy of the module."""

    agent_cluster: Optional[np.ndarray] = None
    agent_slice: Optional[np.ndarray] = None
    mask_table: Optional[np.ndarray] = None  # [rows, H] 0/1, row 0 all ones
    agent_mask: Optional[np.ndarray] = None
    copy_from: List[int] = dataclasses.field(default_factory=list)  # slice copies: copy_to[j] = copy_from[j]
    copy_to: List[int] = dataclasses.field(default_factory=list)


class SharingMethod:
    """One parameter-sharing method for ``num_agents`` agents. Subclasses set the class
    attributes and override ``layout`` (and ``plan_install`` if they pre-train)."""

    name: ClassVar[str]
    title: ClassVar[str]
    Options: ClassVar[type] = MethodOptions
    pretrains: ClassVar[bool] = False

    def __init__(self, options: MethodOptions, *, num_agents: int, space_groups: Optional[Sequence[int]] = None):
        """``space_groups``: per agent, its group of equal observation and action spaces
        (``core.identity.space_groups``); None when all agents share one."""
        if not isinstance(options, self.Options):
            raise TypeError(f"{type(self).__name__} takes {self.Options.__name__}, got {type(options).__name__}.")
        self.options, self.num_agents = options, int(num_agents)
        self.space_groups = None if space_groups is None else np.asarray(space_groups, dtype=np.int64)
        options.check_agents(self.num_agents)

    def layout(self, hidden_sizes: Sequence[int]) -> EngineLayout:
        """The engine's slices, id input and initial masks for this method."""
        return EngineLayout()

    def resolved(self, seed_field: str) -> int:
        """A seed option's value; one left open (the module is built before the run's seed is
        known to it) stands at 0 until ``SharingCallback`` installs ``initial_plan`` or a fit
        made with ``options.with_run_seed``."""
        value = getattr(self.options, seed_field)
        return 0 if value is None else value

    def initial_plan(self, hidden_sizes: Sequence[int]) -> Optional["InstallPlan"]:
        """Tables that depend on the run's seed, installed once the run starts (None: none)."""
        return None

    def plan_install(self, fit: IdentityResult, agent_slice: np.ndarray, hidden_sizes: Sequence[int]) -> InstallPlan:
        """The tables a fit installs (methods that pre-train only)."""
        raise TypeError(f"'{self.name}' does not pre-train identities.")


def apply_plan(module: Any, plan: InstallPlan, optimizers: Sequence[Any] = ()) -> None:
    """Writes ``plan`` into one copy of the engine module (and, on a Learner, its optimizers).

    Slice copies carry the optimizer's per-parameter state along (Adam's moments), so a slice
    that starts from another continues exactly where that one was.
    """
    if plan.copy_to:
        module.copy_slices(plan.copy_from, plan.copy_to)
        for optimizer in optimizers:
            for param in module.grouped_parameters():
                state = optimizer.state.get(param, {})
                for value in state.values():
                    if hasattr(value, "shape") and value.shape == param.shape:
                        value[plan.copy_to] = value[plan.copy_from].clone()
    module.set_tables(agent_slice=plan.agent_slice, agent_cluster=plan.agent_cluster,
                      mask_table=plan.mask_table, agent_mask=plan.agent_mask)
