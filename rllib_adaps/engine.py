"""The sharing engine: one RLModule serves all six methods, under one module id.

Every layer holds ``G`` parameter slices (``weight[g]`` is ``[in, out]``, ``bias[g]`` is
``[out]``). Three small tables, all module buffers, say which parameters each agent uses:

| buffer           | shape    | meaning                                                    |
|------------------|----------|------------------------------------------------------------|
| ``agent_slice``  | ``[N]``  | the parameter slice agent ``i`` uses (0..G-1)              |
| ``agent_mask``   | ``[N]``  | the row of ``mask_table`` agent ``i`` uses (row 0: no mask)|
| ``mask_table``   | ``[R, H]`` | 0/1 neuron masks over the ``H`` hidden neurons (bool)    |
| ``agent_cluster``| ``[N]``  | cluster of agent ``i`` from identity pre-training (-1: none)|

| method  | G (slices)              | agent_slice        | agent_mask              |
|---------|-------------------------|--------------------|-------------------------|
| FuPS    | 1                       | 0                  | 0 (no masking at all)   |
| FuPS+id | 1 (one-hot id input)    | 0                  | 0                       |
| SNP-PS  | 1                       | 0                  | i + 1 (own random mask) |
| AdaPS   | 1                       | 0                  | cluster + 1             |
| NoPS    | N                       | i                  | 0                       |
| SePS    | bound on K (allocated)  | cluster (0 before) | 0                       |

A forward pass routes each sample by its agent index (last observation column, written by
``AgentIndexObservations``): samples are scattered into a ``[U, rows, in]`` block, one
``bmm`` per layer runs every used slice at once, and the result is gathered back. No loop
over agents or groups; with one slice in use it is a plain matmul. A sample's loss reaches
only its own slice. Tables are buffers, so every weight sync and checkpoint carries them.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import (
    TARGET_NETWORK_ACTION_DIST_INPUTS,
    InferenceOnlyAPI,
    TargetNetworkAPI,
    ValueFunctionAPI,
)
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.annotations import override
from ray.rllib.utils.torch_utils import FLOAT_MIN

from rllib_adaps.masks import check_threshold, random_pruning_masks

#: Bumped when the module's state layout changes; older checkpoints are refused.
ENGINE_VERSION = 2
METHOD_CODES = ("nops", "fups", "fups_id", "seps", "snp", "adaps")
MASKABLE_NETWORKS = ("actor", "critic")
ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU, "silu": torch.nn.SiLU, "swish": torch.nn.SiLU}

#: The module's own ``model_config`` keys and their defaults.
ENGINE_MODEL_CONFIG: Dict[str, Any] = {
    "agent_ids": None,  # env order: row i of every table belongs to agent_ids[i]
    "action_sizes": None,  # valid actions per agent (None: the whole action space)
    "obs_sizes": None,  # real observation size per agent before padding (identity pre-training reads it)
    "num_slices": 1,  # G parameter slices per layer
    "agent_slices": None,  # initial agent -> slice table (None: all 0)
    "agent_id_input": False,  # FuPS+id: one-hot agent index appended to the features
    "masking": "none",  # none | random (SNP-PS) | cluster (AdaPS)
    "mask_rows": 1,  # R rows of mask_table (row 0 is all ones)
    "masked_networks": list(MASKABLE_NETWORKS),
    "pruning_rate": 0.5,
    "mask_seed": 0,
    "mask_threshold": 0.2,
    "sharing_method": None,  # recorded in checkpoints, checked when a state is loaded
}

#: RLlib ``model_config`` keys the engine reads; every other RLlib key must keep its default.
SUPPORTED_RLLIB_KEYS = ("fcnet_hiddens", "fcnet_activation", "vf_share_layers")


def check_model_config(model_config: Dict[str, Any]) -> Dict[str, Any]:
    """Merges defaults and refuses keys the engine would otherwise ignore silently."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    rllib_defaults = dataclasses.asdict(DefaultModelConfig())
    for key, value in (model_config or {}).items():
        if key in ENGINE_MODEL_CONFIG or key in SUPPORTED_RLLIB_KEYS:
            continue
        if key in rllib_defaults:
            if value != rllib_defaults[key]:
                raise ValueError(
                    f"model_config[{key!r}] = {value!r} is not supported by the sharing engine (an MLP actor-critic); "
                    f"it reads only {list(SUPPORTED_RLLIB_KEYS)} of RLlib's keys. Remove {key!r} or leave it at its "
                    f"default ({rllib_defaults[key]!r})."
                )
            continue
        import difflib

        close = difflib.get_close_matches(key, [*ENGINE_MODEL_CONFIG, *rllib_defaults], n=1)
        hint = f" Did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"Unknown model_config key {key!r}.{hint}")
    cfg = {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu", "vf_share_layers": False, **ENGINE_MODEL_CONFIG}
    cfg.update({k: v for k, v in (model_config or {}).items() if k in cfg})
    return cfg


class Routing:
    """Where each sample of a batch goes: its slice and its row in the ``[U, rows]`` block.

    Built once per forward pass from the per-sample slice index and reused by every layer.
    ``U`` counts the slices the agents use (SePS allocates more than it uses).
    """

    def __init__(self, sample_slice: torch.Tensor, used_slices: torch.Tensor, num_slices: int):
        self.used = used_slices  # [U] slice ids in use (sorted)
        self.single = len(used_slices) == 1
        self.all_slices = len(used_slices) == num_slices  # then slice id == block index
        if self.single:
            return
        if self.all_slices:
            sample_compact = sample_slice
        else:
            compact = torch.full((num_slices,), -1, dtype=torch.int64, device=used_slices.device)
            compact[used_slices] = torch.arange(len(used_slices), device=used_slices.device)
            sample_compact = compact[sample_slice]  # [B] in 0..U-1
        counts = torch.bincount(sample_compact, minlength=len(used_slices))
        self.rows = int(counts.max()) if len(sample_compact) else 0
        order = torch.argsort(sample_compact, stable=True)
        starts = torch.cumsum(counts, 0) - counts
        position = torch.empty_like(order)
        position[order] = torch.arange(len(order), device=order.device) - starts[sample_compact[order]]
        self.slot = sample_compact * self.rows + position  # [B] row in the flattened block

    def scatter(self, x: torch.Tensor) -> torch.Tensor:
        """``[B, d]`` -> ``[U, rows, d]`` (unused rows are zero and never read back)."""
        block = x.new_zeros(len(self.used) * self.rows, x.shape[-1]).index_copy(0, self.slot, x)
        return block.view(len(self.used), self.rows, x.shape[-1])

    def gather(self, block: torch.Tensor) -> torch.Tensor:
        return block.reshape(-1, block.shape[-1]).index_select(0, self.slot)


class GroupedLinear(torch.nn.Module):
    """``G`` independent linear maps in one tensor; slice ``g`` is ``weight[g]``, ``bias[g]``.

    Each slice is initialised as ``torch.nn.Linear`` would be.
    """

    def __init__(self, num_slices: int, in_features: int, out_features: int):
        super().__init__()
        bound = 1.0 / math.sqrt(in_features)
        self.weight = torch.nn.Parameter(torch.empty(num_slices, in_features, out_features).uniform_(-bound, bound))
        self.bias = torch.nn.Parameter(torch.empty(num_slices, out_features).uniform_(-bound, bound))

    def forward(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        """``x``: ``[B, in]`` when one slice is in use, else ``[U, rows, in]``."""
        if routing.single:
            g = routing.used[0]
            return torch.addmm(self.bias[g], x, self.weight[g])
        if routing.all_slices:  # NoPS, and SePS using its whole bound: no copy of the weights
            return torch.baddbmm(self.bias[:, None, :], x, self.weight)
        weight, bias = self.weight.index_select(0, routing.used), self.bias.index_select(0, routing.used)
        return torch.baddbmm(bias[:, None, :], x, weight)


class GroupedMLP(torch.nn.Module):
    """Hidden layers (each followed by the activation and an optional neuron mask) and a head."""

    def __init__(self, num_slices: int, in_dim: int, hiddens: Sequence[int], out_dim: Optional[int], activation: str):
        super().__init__()
        sizes = [in_dim, *hiddens]
        self.hidden = torch.nn.ModuleList(GroupedLinear(num_slices, a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.head = GroupedLinear(num_slices, sizes[-1], out_dim) if out_dim is not None else None
        self.activation = ACTIVATIONS[activation]()
        self.hidden_sizes = list(hiddens)

    def body(self, x: torch.Tensor, routing: Routing, masks: Optional[torch.Tensor]) -> torch.Tensor:
        """Hidden layers; ``masks`` has the layout of ``x`` with ``sum(hidden_sizes)`` columns."""
        offset = 0
        for layer, size in zip(self.hidden, self.hidden_sizes):
            x = self.activation(layer(x, routing))
            if masks is not None:
                x = x * masks[..., offset : offset + size]
            offset += size
        return x

    def forward(self, x, routing, masks=None):
        return self.head(self.body(x, routing, masks), routing)


class ParameterSharingModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI, InferenceOnlyAPI):
    """One actor-critic for all agents, with per-agent parameter slices and neuron masks.

    Works with PPO (``ValueFunctionAPI``) and APPO/IMPALA (``TargetNetworkAPI``). EnvRunners
    build it without the critic (``InferenceOnlyAPI``). Reads RLlib's ``fcnet_hiddens``,
    ``fcnet_activation`` and ``vf_share_layers`` and its own keys (``ENGINE_MODEL_CONFIG``);
    any other RLlib key set away from its default is refused. The observation space is the
    padded observation plus one column holding the agent index; the action space is
    ``Discrete`` (the largest of all agents'), with actions an agent lacks masked out.
    """

    #: Defaults a subclass may change (``AdaPSModule`` masks by clusters).
    default_model_config: Dict[str, Any] = {}

    @override(TorchRLModule)
    def setup(self):
        cfg = check_model_config({**self.default_model_config, **(self.model_config or {})})
        self._validate(cfg)
        self.agent_ids: List[str] = list(cfg["agent_ids"])
        self.num_agents = n = len(self.agent_ids)
        self.num_slices = int(cfg["num_slices"])
        self.masking: str = cfg["masking"]
        self.agent_id_input = bool(cfg["agent_id_input"])
        self.hidden_sizes = [int(h) for h in cfg["fcnet_hiddens"]]
        self.obs_sizes = None if cfg["obs_sizes"] is None else [int(x) for x in cfg["obs_sizes"]]
        self.action_sizes = None if cfg["action_sizes"] is None else [int(x) for x in cfg["action_sizes"]]
        self.vf_share_layers = bool(cfg["vf_share_layers"])
        masked = set(cfg["masked_networks"]) if self.masking != "none" else set()
        self.mask_actor = "actor" in masked or (self.vf_share_layers and bool(masked))
        self.mask_critic = "critic" in masked or (self.vf_share_layers and bool(masked))

        obs_dim = int(self.observation_space.shape[0]) - 1
        in_dim = obs_dim + (n if self.agent_id_input else 0)
        num_actions = int(self.action_space.n)
        g, act = self.num_slices, cfg["fcnet_activation"]
        if self.vf_share_layers:
            self.actor = GroupedMLP(g, in_dim, self.hidden_sizes, num_actions, act)  # trunk + policy head
            self.vf_head = GroupedLinear(g, self.hidden_sizes[-1], 1)
        else:
            self.actor = GroupedMLP(g, in_dim, self.hidden_sizes, num_actions, act)
            self.critic = GroupedMLP(g, in_dim, self.hidden_sizes, 1, act)

        slices = np.zeros(n, np.int64) if cfg["agent_slices"] is None else np.asarray(cfg["agent_slices"], np.int64)
        self.register_buffer("agent_slice", torch.as_tensor(slices).clone())
        self.register_buffer("agent_cluster", torch.full((n,), -1, dtype=torch.int64))
        rows = max(int(cfg["mask_rows"]), 1)
        table = torch.ones(rows, sum(self.hidden_sizes), dtype=torch.bool)
        agent_mask = torch.zeros(n, dtype=torch.int64)
        if self.masking == "random":  # SNP-PS: row i + 1 is agent i's fixed random mask
            layers = random_pruning_masks(n, self.hidden_sizes, cfg["pruning_rate"], cfg["mask_seed"])
            table[1:] = torch.as_tensor(np.concatenate(layers, axis=1) > 0)
            agent_mask = torch.arange(1, n + 1)
        self.register_buffer("mask_table", table)
        self.register_buffer("agent_mask", agent_mask)
        method = cfg["sharing_method"]
        self.register_buffer("sharing_method_code", torch.tensor(METHOD_CODES.index(method) if method in METHOD_CODES else -1))
        self.register_buffer("engine_version", torch.tensor(ENGINE_VERSION))
        self._routing_cache = None  # (obs tensor, Routing) of the last train forward

        action_sizes = cfg["action_sizes"]
        self.has_action_masks = action_sizes is not None and any(int(a) < num_actions for a in action_sizes)
        if self.has_action_masks:
            allowed = torch.arange(num_actions)[None, :] < torch.as_tensor([int(a) for a in action_sizes])[:, None]
            self.register_buffer("action_logit_penalty", torch.where(allowed, 0.0, FLOAT_MIN).to(torch.float32))

    def _validate(self, cfg: Dict[str, Any]) -> None:
        name = type(self).__name__
        if not cfg["agent_ids"]:
            raise ValueError(f"{name} needs model_config['agent_ids']: the env's agent ids in env order (configure_sharing() sets it).")
        n = len(cfg["agent_ids"])
        if cfg["masking"] not in ("none", "random", "cluster"):
            raise ValueError(f"model_config['masking'] must be one of ('none', 'random', 'cluster'), got {cfg['masking']!r}.")
        unknown = set(cfg["masked_networks"]) - set(MASKABLE_NETWORKS)
        if unknown or not cfg["masked_networks"]:
            raise ValueError(f"model_config['masked_networks'] must be a non-empty subset of {MASKABLE_NETWORKS}, got {cfg['masked_networks']!r}.")
        check_threshold(cfg["mask_threshold"])
        if cfg["fcnet_activation"] not in ACTIVATIONS:
            raise ValueError(f"model_config['fcnet_activation'] must be one of {sorted(ACTIVATIONS)}, got {cfg['fcnet_activation']!r}.")
        if not cfg["fcnet_hiddens"] or any(int(h) < 1 for h in cfg["fcnet_hiddens"]):
            raise ValueError(f"model_config['fcnet_hiddens'] must be a non-empty list of positive ints, got {cfg['fcnet_hiddens']!r}.")
        if int(cfg["num_slices"]) < 1:
            raise ValueError(f"model_config['num_slices'] must be >= 1, got {cfg['num_slices']!r}.")
        slices = cfg["agent_slices"]
        if slices is not None and (len(slices) != n or min(slices) < 0 or max(slices) >= int(cfg["num_slices"])):
            raise ValueError(f"model_config['agent_slices'] needs one slice in [0, num_slices) per agent, got {slices!r}.")
        if cfg["masking"] == "random" and int(cfg["mask_rows"]) < n + 1:
            raise ValueError("model_config['mask_rows'] must be >= number of agents + 1 for masking='random'.")
        if not hasattr(self.action_space, "n"):
            raise ValueError(f"{name} supports Discrete action spaces only, got {self.action_space}.")
        if len(getattr(self.observation_space, "shape", ()) or ()) != 1:
            raise ValueError(f"{name} needs a flat Box observation space (features + agent index), got {self.observation_space}.")
        for key in ("action_sizes", "obs_sizes"):
            if cfg[key] is not None and len(cfg[key]) != n:
                raise ValueError(f"model_config[{key!r}] needs one entry per agent id.")

    # ---------------------------------------------------------------- tables
    def used_slices(self) -> torch.Tensor:
        """Slice ids some agent uses (read from the table every time: it changes on installs and loads)."""
        return torch.unique(self.agent_slice)

    def set_tables(
        self,
        *,
        agent_slice: Optional[np.ndarray] = None,
        agent_cluster: Optional[np.ndarray] = None,
        mask_table: Optional[np.ndarray] = None,
        agent_mask: Optional[np.ndarray] = None,
    ) -> None:
        """Writes routing tables (each given one replaces the current one whole)."""
        if mask_table is not None:
            rows = torch.as_tensor(np.asarray(mask_table) > 0)
            if rows.shape[1] != self.mask_table.shape[1] or rows.shape[0] > self.mask_table.shape[0]:
                raise ValueError(f"mask_table must have at most {self.mask_table.shape[0]} rows of {self.mask_table.shape[1]} neurons, got {tuple(rows.shape)}.")
            self.mask_table[: rows.shape[0]] = rows.to(self.mask_table.device)
        for name, values, bound in (("agent_slice", agent_slice, self.num_slices), ("agent_mask", agent_mask, self.mask_table.shape[0]),
                                    ("agent_cluster", agent_cluster, None)):
            if values is None:
                continue
            values = torch.as_tensor(np.asarray(values), dtype=torch.int64)
            if values.shape != (self.num_agents,) or (bound is not None and (values.min() < 0 or values.max() >= bound)):
                raise ValueError(f"{name} needs one entry per agent ({self.num_agents}) in [0, {bound}), got {values.tolist()}.")
            getattr(self, name).copy_(values.to(getattr(self, name).device))

    def copy_slices(self, sources: Sequence[int], targets: Sequence[int]) -> None:
        """``slice[targets[j]] = slice[sources[j]]`` in every grouped layer (target nets too)."""
        src = torch.as_tensor(list(sources), dtype=torch.int64)
        dst = torch.as_tensor(list(targets), dtype=torch.int64)
        with torch.no_grad():
            for layer in self.modules():
                if isinstance(layer, GroupedLinear):
                    for p in (layer.weight, layer.bias):
                        p[dst.to(p.device)] = p[src.to(p.device)].clone()

    def grouped_parameters(self) -> List[torch.nn.Parameter]:
        """Trainable parameters with a leading slice dimension (all of them)."""
        return [p for p in self.parameters() if p.requires_grad]

    def parameter_counts(self) -> Dict[str, int]:
        """Trainable parameters allocated, and those of the slices agents use."""
        allocated = sum(p.numel() for p in self.grouped_parameters())
        in_use = allocated // self.num_slices * len(self.used_slices())
        return {"allocated": allocated, "in_use": in_use}

    def is_clustered(self) -> bool:
        return bool((self.agent_cluster >= 0).all())

    @override(TorchRLModule)
    def set_state(self, state) -> None:
        """Loads a state after checking it comes from this engine, method and agent count.

        RLlib loads states non-strictly: a checkpoint of another layout, method or agent count
        would otherwise load partly and train on as if nothing happened.
        """
        if isinstance(state, dict):
            if "engine_version" not in state:
                raise ValueError(
                    "This state was written by rllib-adaps before the one-engine release (per-method modules, "
                    "float mask rows). Its layout cannot be loaded into the current sharing engine; retrain, or "
                    "load it with the rllib-adaps version that wrote it."
                )
            slices = state.get("agent_slice")
            if slices is not None and len(slices) != self.num_agents:
                raise ValueError(
                    f"This state holds tables for {len(slices)} agents, but this module serves {self.num_agents} "
                    f"({self.agent_ids[:3]}...): restore checkpoints into a run of the same env and agent count."
                )
            code, own = state.get("sharing_method_code"), int(self.sharing_method_code)
            if code is not None and int(code) >= 0 and own >= 0 and int(code) != own:
                raise ValueError(
                    f"This state was written by a '{METHOD_CODES[int(code)]}' run, but this run uses "
                    f"'{METHOD_CODES[own]}': restore checkpoints into a run of the same sharing method."
                )
        super().set_state(state)

    # ---------------------------------------------------------------- forward
    def _inputs(self, batch: Dict[str, Any]):
        obs = batch[Columns.OBS]
        index = obs[..., -1].long()
        features = obs[..., :-1]
        if self.agent_id_input:
            features = torch.cat([features, torch.nn.functional.one_hot(index, self.num_agents).to(features.dtype)], dim=-1)
        if self.num_slices == 1:  # FuPS, FuPS+id, SNP-PS, AdaPS: nothing to route
            routing = Routing(None, self.agent_slice.new_zeros(1), 1)
        else:
            routing = Routing(self.agent_slice[index], self.used_slices(), self.num_slices)
        masks = self.mask_table[self.agent_mask[index]].to(features.dtype) if (self.mask_actor or self.mask_critic) else None
        if not routing.single:
            features = routing.scatter(features)
            masks = routing.scatter(masks) if masks is not None else None
        return features, index, routing, masks

    def _policy(self, net: GroupedMLP, features, index, routing, masks) -> torch.Tensor:
        return self._logits(net(features, routing, masks if self.mask_actor else None), index, routing)

    def _logits(self, head_out, index, routing) -> torch.Tensor:
        """Head output back in sample order, with the actions an agent lacks masked out."""
        logits = head_out if routing.single else routing.gather(head_out)
        return logits + self.action_logit_penalty[index] if self.has_action_masks else logits

    def _value_embeddings(self, features, routing, masks) -> torch.Tensor:
        """The critic's last hidden layer (the shared trunk's with ``vf_share_layers``)."""
        net = self.actor if self.vf_share_layers else self.critic
        return net.body(features, routing, masks if self.mask_critic else None)

    def _value_head(self, embeddings, routing) -> torch.Tensor:
        head = self.vf_head if self.vf_share_layers else self.critic.head
        values = head(embeddings, routing)
        return (values if routing.single else routing.gather(values)).squeeze(-1)

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        features, index, routing, masks = self._inputs(batch)
        return {Columns.ACTION_DIST_INPUTS: self._policy(self.actor, features, index, routing, masks)}

    @override(TorchRLModule)
    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        features, index, routing, masks = self._inputs(batch)
        if self.vf_share_layers:  # one trunk pass feeds both heads
            embeddings = self.actor.body(features, routing, masks if self.mask_actor else None)
            logits = self._logits(self.actor.head(embeddings, routing), index, routing)
        else:
            logits = self._policy(self.actor, features, index, routing, masks)
            embeddings = self._value_embeddings(features, routing, masks)
        # Embeddings stay in the routed layout; compute_values() reuses this batch's routing.
        self._routing_cache = (batch[Columns.OBS], routing)
        return {Columns.ACTION_DIST_INPUTS: logits, Columns.EMBEDDINGS: embeddings}

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        cache = self._routing_cache
        if embeddings is not None and cache is not None and cache[0] is batch[Columns.OBS]:
            return self._value_head(embeddings, cache[1])  # no second pass through the critic
        features, _, routing, masks = self._inputs(batch)
        return self._value_head(self._value_embeddings(features, routing, masks), routing)

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        return ["vf_head"] if self.vf_share_layers else ["critic"]

    # ---------------------------------------------------------------- APPO / IMPALA
    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        self._target_actor = make_target_network(self.actor)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self):
        return [(self.actor, self._target_actor)]

    @override(TargetNetworkAPI)
    def forward_target(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        features, index, routing, masks = self._inputs(batch)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._policy(self._target_actor, features, index, routing, masks)}


class AdaPSModule(ParameterSharingModule):
    """The engine with AdaPS defaults: one set of parameters, neuron masks per cluster.

    Drop it into an RLlib config with ``model_config={"agent_ids": [...]}``; masks stay all
    ones until ``IdentityPretrainingCallback`` installs the clusters' masks.
    """

    default_model_config = {"masking": "cluster", "sharing_method": "adaps"}

    @override(ParameterSharingModule)
    def setup(self):
        cfg = {**self.default_model_config, **(self.model_config or {})}
        if "mask_rows" not in cfg:  # room for up to one cluster per agent
            cfg["mask_rows"] = len(cfg.get("agent_ids") or []) + 1
        self.model_config = cfg
        super().setup()
