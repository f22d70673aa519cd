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
``AgentIndexObservations`` or the fast path's env) through ``rllib_adaps.core.layers``. A
sample's loss reaches only its own slice. Tables are buffers, so every weight sync and
checkpoint carries them. The method comes from the ``model_config`` as a ``SharingSpec``
(``rllib_adaps.methods.spec``); the engine reads only the spec's ``EngineLayout``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, Dict, List, Optional, Sequence, Tuple

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

from rllib_adaps.core.identity import space_groups
from rllib_adaps.core.layers import ACTIVATIONS, GroupedLinear, GroupedMLP, Routing
from rllib_adaps.core.options import SharingOptionError, did_you_mean
from rllib_adaps.methods.spec import METHOD_KEY, METHODS, SharingSpec, all_option_keys

#: Bumped when the module's state layout changes; older checkpoints are refused.
ENGINE_VERSION = 2

#: The module's own ``model_config`` keys (the sharing spec's keys come on top).
ENGINE_KEYS = (
    "agent_ids",  # env order: row i of every table belongs to agent_ids[i]
    "action_sizes",  # valid actions per agent (None: the whole action space)
    "obs_sizes",  # real observation size per agent before padding (identity pre-training reads it)
)
#: RLlib ``model_config`` keys the engine reads; every other RLlib key must keep its default.
SUPPORTED_RLLIB_KEYS = ("fcnet_hiddens", "fcnet_activation", "vf_share_layers")
#: The network's own key: "torch" (each layer as torch.nn.Linear initialises it) or
#: "orthogonal" (the SePS reference code: gain sqrt(2) in hidden layers, 0.01 in the policy
#: head, 1 in the value head, zero biases).
WEIGHT_INIT_KEY = "weight_init"
WEIGHT_INITS = ("torch", "orthogonal")
NETWORK_KEYS = (*SUPPORTED_RLLIB_KEYS, WEIGHT_INIT_KEY)
PAPER_NETWORK = {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu", "vf_share_layers": False, WEIGHT_INIT_KEY: "torch"}


def read_model_config(model_config: Dict[str, Any], default_method: str = "fups") -> Tuple[Dict[str, Any], SharingSpec]:
    """The engine's settings and the sharing spec of a ``model_config``; refuses keys the engine
    would otherwise ignore silently (an RLlib key away from its default, or a misspelt key)."""
    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    model_config = dict(model_config or {})
    spec = SharingSpec.from_model_config(model_config, default_method)
    own = {*ENGINE_KEYS, *NETWORK_KEYS, METHOD_KEY, *SharingSpec.option_keys(spec.method)}
    rllib_defaults = dataclasses.asdict(DefaultModelConfig())
    for key, value in model_config.items():
        if key in own:
            continue
        if key in rllib_defaults:
            if value != rllib_defaults[key]:
                raise ValueError(
                    f"model_config[{key!r}] = {value!r} is not supported by the sharing engine (an MLP actor-critic); "
                    f"it reads only {list(SUPPORTED_RLLIB_KEYS)} of RLlib's keys. Remove {key!r} or leave it at its "
                    f"default ({rllib_defaults[key]!r})."
                )
        elif key in all_option_keys():
            raise SharingOptionError(f"model_config[{key!r}] is not an option of sharing method {spec.method!r} "
                                     f"(options: {', '.join(SharingSpec.option_keys(spec.method)) or 'none'}).")
        else:
            raise ValueError(f"Unknown model_config key {key!r}.{did_you_mean(key, [*own, *rllib_defaults])}")
    cfg = {**PAPER_NETWORK, **{k: None for k in ENGINE_KEYS}}
    cfg.update({k: v for k, v in model_config.items() if k in cfg})
    return cfg, spec


class ParameterSharingModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI, InferenceOnlyAPI):
    """One actor-critic for all agents, with per-agent parameter slices and neuron masks.

    Works with PPO (``ValueFunctionAPI``) and APPO/IMPALA (``TargetNetworkAPI``). EnvRunners
    build it without the critic (``InferenceOnlyAPI``). Reads RLlib's ``fcnet_hiddens``,
    ``fcnet_activation`` and ``vf_share_layers``, its own keys (``ENGINE_KEYS``) and the
    sharing spec's (``sharing_method`` and that method's options, ``read_model_config``); any
    other RLlib key set away from its default is refused. The observation space is the
    padded observation plus one column holding the agent index; the action space is
    ``Discrete`` (the largest of all agents'), with actions an agent lacks masked out.
    """

    #: Defaults a subclass may change (``AdaPSModule``'s method is AdaPS; here it is FuPS).
    default_model_config: Dict[str, Any] = {}

    @override(TorchRLModule)
    def setup(self):
        cfg, self.sharing_spec = read_model_config({**self.default_model_config, **(self.model_config or {})})
        self._validate(cfg)
        self.agent_ids: List[str] = list(cfg["agent_ids"])
        self.num_agents = n = len(self.agent_ids)
        self.hidden_sizes = [int(h) for h in cfg["fcnet_hiddens"]]
        self.obs_sizes = None if cfg["obs_sizes"] is None else [int(x) for x in cfg["obs_sizes"]]
        self.action_sizes = None if cfg["action_sizes"] is None else [int(x) for x in cfg["action_sizes"]]
        groups = space_groups(n, self.obs_sizes, self.action_sizes)  # never one cluster across spaces
        layout = self.sharing_spec.layout(n, self.hidden_sizes, groups)  # checks the options against N
        self.num_slices = layout.num_slices
        self.agent_id_input = layout.agent_id_input
        self.vf_share_layers = bool(cfg["vf_share_layers"])
        masked = set(layout.masked_networks)
        self.mask_actor = "actor" in masked or (self.vf_share_layers and bool(masked))
        self.mask_critic = "critic" in masked or (self.vf_share_layers and bool(masked))

        obs_dim = int(self.observation_space.shape[0]) - 1
        in_dim = obs_dim + (n if self.agent_id_input else 0)
        num_actions = int(self.action_space.n)
        g, act = self.num_slices, cfg["fcnet_activation"]
        self.actor = GroupedMLP(g, in_dim, self.hidden_sizes, num_actions, act)  # with vf_share_layers: the trunk too
        if self.vf_share_layers:
            self.vf_head = GroupedLinear(g, self.hidden_sizes[-1], 1)
        else:
            self.critic = GroupedMLP(g, in_dim, self.hidden_sizes, 1, act)
        if cfg[WEIGHT_INIT_KEY] == "orthogonal":
            self.actor.orthogonal_(math.sqrt(2.0), 0.01)
            if self.vf_share_layers:
                self.vf_head.orthogonal_(1.0)
            else:
                self.critic.orthogonal_(math.sqrt(2.0), 1.0)

        slices = np.zeros(n, np.int64) if layout.agent_slices is None else np.asarray(layout.agent_slices, np.int64)
        self.register_buffer("agent_slice", torch.as_tensor(slices).clone())
        self.register_buffer("agent_cluster", torch.full((n,), -1, dtype=torch.int64))
        table = torch.ones(max(layout.mask_rows, 1), sum(self.hidden_sizes), dtype=torch.bool)
        agent_mask = torch.zeros(n, dtype=torch.int64)
        if layout.mask_table is not None:
            table[: len(layout.mask_table)] = torch.as_tensor(np.asarray(layout.mask_table) > 0)
            agent_mask = torch.as_tensor(np.asarray(layout.agent_mask), dtype=torch.int64).clone()
        self.register_buffer("mask_table", table)
        self.register_buffer("agent_mask", agent_mask)
        self.register_buffer("sharing_method_code", torch.tensor(METHODS.index(self.sharing_spec.method)))
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
        if cfg["fcnet_activation"] not in ACTIVATIONS:
            raise ValueError(f"model_config['fcnet_activation'] must be one of {sorted(ACTIVATIONS)}, got {cfg['fcnet_activation']!r}.")
        if cfg[WEIGHT_INIT_KEY] not in WEIGHT_INITS:
            raise ValueError(f"model_config[{WEIGHT_INIT_KEY!r}] must be one of {list(WEIGHT_INITS)}, got {cfg[WEIGHT_INIT_KEY]!r}.")
        if not cfg["fcnet_hiddens"] or any(int(h) < 1 for h in cfg["fcnet_hiddens"]):
            raise ValueError(f"model_config['fcnet_hiddens'] must be a non-empty list of positive ints, got {cfg['fcnet_hiddens']!r}.")
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
                    f"This state was written by a '{METHODS[int(code)]}' run, but this run uses "
                    f"'{METHODS[own]}': restore checkpoints into a run of the same sharing method."
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
    """The engine with AdaPS as its default method: one set of parameters, neuron masks per cluster.

    Drop it into an RLlib config with ``model_config={"agent_ids": [...], **adaps_options}``
    and ``SharingCallback`` (the README's manual route); masks stay all ones until the callback
    installs the clusters' masks.
    """

    default_model_config = {METHOD_KEY: "adaps"}
