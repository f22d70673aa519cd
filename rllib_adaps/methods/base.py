"""What every sharing method is made of: its options, its module settings, its install plan.

A method never touches RLlib: it says which ``model_config`` the engine needs
(``module_config``) and, for methods that pre-train identities, which routing tables and
slice copies a fit turns into (``plan_install``). ``SharingCallback`` applies that plan on
every Learner and EnvRunner (``apply_plan``), so every copy gets exactly the same tables.
"""

from __future__ import annotations

import dataclasses
import difflib
from typing import Any, ClassVar, Dict, List, Optional, Sequence

import numpy as np

from rllib_adaps.identity import DEFAULT_MIN_TRANSITIONS_PER_AGENT, IDENTITY_LEAK_MODES, RECONSTRUCT_TARGETS, IdentityResult
from rllib_adaps.masks import check_threshold


class SharingOptionError(ValueError):
    """An option a sharing method does not have, or a value it cannot take."""


#: Options of release 0.1 and what replaced them (refused with this message, never mapped
#: silently: the default timeline changed with them).
RENAMED_OPTIONS = {
    "pretrain_env_steps": (
        "'pretrain_env_steps' is now 'shared_training_env_steps' (env steps of shared training before identities are "
        "collected), and its default is 0: collect with the initial shared policy, as the AdaPS paper does. Set "
        "shared_training_env_steps to the old value to keep the old timeline."
    ),
    "drop_identity_leaks": (
        "'drop_identity_leaks' is now 'identity_leaks': 'reconstruct' (the default: the decoder does not read them and "
        "the identity must carry them), 'drop' (the old True) or 'read' (the old False)."
    ),
    "delay_env_steps": (
        "'delay_env_steps' was merged into 'shared_training_env_steps': set it to delay + pretrain env steps."
    ),
}


@dataclasses.dataclass
class MethodOptions:
    """Options of a method without options of its own (FuPS, FuPS+id, NoPS)."""

    @classmethod
    def from_dict(cls, method: str, options: Dict[str, Any]) -> "MethodOptions":
        names = [f.name for f in dataclasses.fields(cls)]
        renamed = sorted(set(options) & set(RENAMED_OPTIONS))
        if renamed:
            raise SharingOptionError(" ".join(RENAMED_OPTIONS[name] for name in renamed))
        unknown = sorted(set(options) - set(names))
        if unknown:
            hints = [f"{u!r} (did you mean {c[0]!r}?)" if (c := difflib.get_close_matches(u, names, n=1)) else repr(u) for u in unknown]
            valid = f"valid options: {names}" if names else "it takes no options"
            raise SharingOptionError(f"Unknown option(s) for sharing method '{method}': {', '.join(hints)}; {valid}.")
        return cls(**options)

    def validate(self, num_agents: int) -> "MethodOptions":
        return self


@dataclasses.dataclass
class PretrainingOptions(MethodOptions):
    """Identity pre-training: its schedule, the VAE and the clustering (SePS defaults where they exist)."""

    #: Env steps of shared training (every agent on the shared parameters, no masks or groups)
    #: before the collection. 0, the AdaPS paper's timeline: collect with the initial shared
    #: policy, fit, install, then train. SePS's reference code trains first (e.g. 20_000).
    shared_training_env_steps: int = 0
    identity_env_steps: int = 3_000  # env steps sampled for the VAE's transitions (docs/results/identity_recovery*)
    min_transitions_per_agent: int = DEFAULT_MIN_TRANSITIONS_PER_AGENT  # collect more until every agent has this many
    num_clusters: Optional[int] = None  # None: chosen automatically (silhouette over K = 2..N-1)
    z_dim: int = 10
    kl_weight: float = 1e-4
    vae_epochs: int = 10
    vae_batch_size: int = 128
    vae_min_updates: int = 2_000  # at least this many VAE gradient steps (small collections)
    vae_lr: float = 1e-3  # SePS: 3e-4 with ~200k env steps; see identity.train_identity_vae
    reconstruct: Sequence[str] = RECONSTRUCT_TARGETS
    identity_leaks: str = "reconstruct"  # per-agent constant obs features: reconstruct | drop | read (identity.fit_identities)
    recluster_every_env_steps: Optional[int] = None  # None: cluster once
    seed: int = 0  # VAE and k-means

    def validate(self, num_agents: int) -> "PretrainingOptions":
        for name in ("identity_env_steps", "vae_epochs", "vae_batch_size", "vae_min_updates", "z_dim",
                     "min_transitions_per_agent"):
            if int(getattr(self, name)) < 1:
                raise SharingOptionError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.shared_training_env_steps < 0:
            raise SharingOptionError(f"shared_training_env_steps must be >= 0, got {self.shared_training_env_steps}.")
        if self.num_clusters is not None and not 1 <= self.num_clusters <= num_agents:
            raise SharingOptionError(f"num_clusters (K) must be in [1, {num_agents}] (the number of agents), got {self.num_clusters}.")
        if self.num_clusters is None and num_agents < 3:
            raise SharingOptionError(f"With {num_agents} agents K cannot be chosen automatically (K in 2..N-1); set num_clusters.")
        if self.kl_weight < 0 or self.vae_lr <= 0:
            raise SharingOptionError(f"kl_weight must be >= 0 and vae_lr > 0, got {self.kl_weight}, {self.vae_lr}.")
        if self.recluster_every_env_steps is not None and self.recluster_every_env_steps < 1:
            raise SharingOptionError(f"recluster_every_env_steps must be >= 1 or None, got {self.recluster_every_env_steps}.")
        if self.identity_leaks not in IDENTITY_LEAK_MODES:
            raise SharingOptionError(f"identity_leaks must be one of {IDENTITY_LEAK_MODES}, got {self.identity_leaks!r}.")
        bad = set(self.reconstruct) - set(RECONSTRUCT_TARGETS)
        if not self.reconstruct or bad:
            raise SharingOptionError(f"reconstruct must be a non-empty subset of {RECONSTRUCT_TARGETS}, got {self.reconstruct}.")
        return self

    def max_clusters(self, num_agents: int) -> int:
        """The most clusters a fit can return: room to allocate for them in advance."""
        return self.num_clusters or num_agents


def check_masked_networks(masked_networks: Sequence[str]) -> None:
    from rllib_adaps.engine import MASKABLE_NETWORKS

    if set(masked_networks) - set(MASKABLE_NETWORKS) or not masked_networks:
        raise SharingOptionError(f"masked_networks must be a non-empty subset of {MASKABLE_NETWORKS}, got {list(masked_networks)}.")


@dataclasses.dataclass
class InstallPlan:
    """Tables (and slice copies) that a fit turns into; identical for every copy of the module."""

    agent_cluster: np.ndarray
    agent_slice: Optional[np.ndarray] = None
    mask_table: Optional[np.ndarray] = None  # [rows, H] 0/1, row 0 all ones
    agent_mask: Optional[np.ndarray] = None
    copy_from: List[int] = dataclasses.field(default_factory=list)  # slice copies: copy_to[j] = copy_from[j]
    copy_to: List[int] = dataclasses.field(default_factory=list)


class SharingMethod:
    """One parameter-sharing method. Subclasses set the class attributes and override as needed."""

    name: ClassVar[str]
    title: ClassVar[str]
    Options: ClassVar[type] = MethodOptions
    pretrains: ClassVar[bool] = False

    def __init__(self, options: Optional[Dict[str, Any]] = None, *, num_agents: int):
        self.num_agents = int(num_agents)
        self.options = self.Options.from_dict(self.name, dict(options or {})).validate(self.num_agents)

    def module_config(self) -> Dict[str, Any]:
        """The engine's ``model_config`` keys for this method (see ``engine.ENGINE_MODEL_CONFIG``)."""
        return {"sharing_method": self.name}

    def plan_install(self, fit: IdentityResult, agent_slice: np.ndarray, hidden_sizes: Sequence[int]) -> InstallPlan:
        """The tables a fit installs (methods that pre-train only)."""
        raise TypeError(f"'{self.name}' does not pre-train identities.")


def apply_plan(module, plan: InstallPlan, optimizers: Sequence[Any] = ()) -> None:
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


def check_threshold_option(value: float) -> None:
    try:
        check_threshold(value)
    except ValueError as err:
        raise SharingOptionError(f"mask_threshold: {err}") from None
