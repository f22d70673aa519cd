"""The sharing engine: one RLModule serves all six methods, under one module id.

Every layer holds ``G`` parameter slices (``weight[g]`` is ``[in, out]``, ``bias[g]`` is
``[out]``). Three small tables, all module buffers, say which parameters each agent uses:

| buffer           | shape    | meaning                                                    |
|------------------|----------|------------------------------------------------------------|
| ``agent_slice``  | ``[N]``  | the parameter slice agent ``i`` uses (0..G-1)              |
| ``agent_mask``   | ``[N]``  | the row of ``mask_table`` agent ``i`` uses (row 0: no mask)|
| ``mask_table``   | ``[R, H]`` | 0/1 masks over the ``H`` hidden neurons and recurrent units |
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

import gymnasium as gym
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
from rllib_adaps.core.layers import ACTIVATIONS, RECURRENT_CELLS, GroupedLinear, GroupedLogStd, GroupedMLP, GroupedRecurrentCell, Routing
from rllib_adaps.core.options import SharingOptionError, did_you_mean
from rllib_adaps.methods.spec import METHOD_KEY, METHODS, SharingSpec, all_option_keys

#: Bumped when the module's state layout changes; older checkpoints are refused.
ENGINE_VERSION = 2

#: The module's own ``model_config`` keys (the sharing spec's keys come on top).
ENGINE_KEYS = (
    "agent_ids",  # env order: row i of every table belongs to agent_ids[i]
    "action_sizes",  # valid actions (Discrete) or action dims (Box) per agent (None: the whole action space)
    "obs_sizes",  # real observation size per agent before padding (identity pre-training reads it)
    "central_dim",  # columns of the centralised critic's input after each agent's own observation (0: none)
    "array_training",  # ARRAY_TRAINING_KEY: a run setting the module ignores (rllib.array_training)
)
#: ``configure_sharing(array_training=...)``: None, True or False; read by ``SharingCallback``.
ARRAY_TRAINING_KEY = "array_training"
#: RLlib ``model_config`` keys the engine reads; every other RLlib key must keep its default.
SUPPORTED_RLLIB_KEYS = ("fcnet_hiddens", "fcnet_activation", "vf_share_layers", "use_lstm", "lstm_cell_size",
                        "max_seq_len", "free_log_std", "log_std_clip_param")
#: The network's own key: "torch" (each layer as torch.nn.Linear initialises it) or
#: "orthogonal" (the SePS reference code: gain sqrt(2) in hidden layers, 0.01 in the policy
#: head, 1 in the value head, zero biases).
WEIGHT_INIT_KEY = "weight_init"
WEIGHT_INITS = ("torch", "orthogonal")
#: With ``use_lstm``: "lstm" (RLlib's) or "gru".
RECURRENT_CELL_KEY = "recurrent_cell"
#: What the critic reads beside the agent's own observation: nothing ("observation"), the
#: env's global ``state()`` ("state") or every agent's observation ("joint_observations").
CRITIC_INPUT_KEY = "critic_input"
CRITIC_INPUTS = ("observation", "state", "joint_observations")
#: Whose parameters the critic uses: the sharing method's slices and masks ("method") or one
#: critic for every agent ("shared").
CRITIC_SHARING_KEY = "critic_sharing"
CRITIC_SHARINGS = ("method", "shared")
NETWORK_KEYS = (*SUPPORTED_RLLIB_KEYS, WEIGHT_INIT_KEY, RECURRENT_CELL_KEY, CRITIC_INPUT_KEY, CRITIC_SHARING_KEY)
PAPER_NETWORK = {"fcnet_hiddens": [64, 64], "fcnet_activation": "relu", "vf_share_layers": False, WEIGHT_INIT_KEY: "torch",
                 "use_lstm": False, "lstm_cell_size": 64, "max_seq_len": 20, RECURRENT_CELL_KEY: "lstm",
                 "free_log_std": False, "log_std_clip_param": 20.0, CRITIC_INPUT_KEY: "observation",
                 CRITIC_SHARING_KEY: "method"}


def read_model_config(model_config: Dict[str, Any], default_method: str = "fups") -> Tuple[Dict[str, Any], SharingSpec]:
    """The engine's settings and the sharing spec of a ``model_config``, validated (the one place):
    refuses keys the engine would otherwise ignore silently (an RLlib key away from its default,
    or a misspelt key) and values it does not have, before any env or actor is built."""
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
                    f"model_config[{key!r}] = {value!r} is not supported by the sharing engine (an MLP or recurrent actor-critic); "
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
    choices = {"fcnet_activation": sorted(ACTIVATIONS), WEIGHT_INIT_KEY: list(WEIGHT_INITS), RECURRENT_CELL_KEY: list(RECURRENT_CELLS),
               CRITIC_INPUT_KEY: list(CRITIC_INPUTS), CRITIC_SHARING_KEY: list(CRITIC_SHARINGS)}
    for key, allowed in choices.items():
        if cfg[key] not in allowed:
            raise ValueError(f"model_config[{key!r}] must be one of {allowed}, got {cfg[key]!r}.")
    if cfg[ARRAY_TRAINING_KEY] not in (None, True, False):
        raise ValueError(f"array_training must be None (automatic), True or False, got {cfg[ARRAY_TRAINING_KEY]!r}.")
    if not cfg["fcnet_hiddens"] or any(int(h) < 1 for h in cfg["fcnet_hiddens"]):
        raise ValueError(f"model_config['fcnet_hiddens'] must be a non-empty list of positive ints, got {cfg['fcnet_hiddens']!r}.")
    if cfg["use_lstm"] and int(cfg["lstm_cell_size"]) < 1:
        raise ValueError(f"model_config['lstm_cell_size'] must be a positive int, got {cfg['lstm_cell_size']!r}.")
    if cfg["vf_share_layers"] and (cfg[CRITIC_INPUT_KEY] != "observation" or cfg[CRITIC_SHARING_KEY] != "method"):
        raise ValueError(f"model_config[{CRITIC_INPUT_KEY!r}] and [{CRITIC_SHARING_KEY!r}] choose a separate critic; "
                         "they need vf_share_layers=False.")
    return cfg, spec


class _Pass:
    """One forward pass's inputs, routed once: flat samples (time folded into the batch)."""

    def __init__(self, lead, index, actor_in, routing, masks, critic_in, critic_routing, critic_masks):
        self.lead = lead  # batch dims of the observations ([B] or [B, T])
        self.index = index  # [S] agent index per sample
        self.actor_in, self.routing, self.masks = actor_in, routing, masks
        self.critic_in, self.critic_routing, self.critic_masks = critic_in, critic_routing, critic_masks


class ParameterSharingModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI, InferenceOnlyAPI):
    """One actor-critic for all agents, with per-agent parameter slices and neuron masks.

    Works with PPO (``ValueFunctionAPI``) and APPO/IMPALA (``TargetNetworkAPI``). EnvRunners
    build it without the critic (``InferenceOnlyAPI``). Reads RLlib's keys in
    ``SUPPORTED_RLLIB_KEYS``, its own (``ENGINE_KEYS``, ``NETWORK_KEYS``) and the sharing spec's
    (``read_model_config``); any other RLlib key set away from its default is refused.

    - Observations: the padded observation, then ``central_dim`` columns the critic alone reads
      (``critic_input``), then one column holding the agent index.
    - Actions: ``Discrete`` (the largest of all agents', actions an agent lacks masked out) or a
      ``Box(-1, 1, (largest,))`` read as a diagonal Gaussian (RLlib's ``TorchDiagGaussian``;
      ``free_log_std`` as in RLlib); dims an agent lacks have mean 0 and log std 0 and no
      gradient, and the env side scales each agent's own dims to its bounds.
    - ``use_lstm``: hidden layers, then an LSTM or GRU cell (``recurrent_cell``) with the same
      slices and masks (its units are one more masked layer), then the head. With
      ``vf_share_layers`` the value head reads the recurrent output; else the critic stays a
      feed-forward network, so EnvRunners carry the actor's state only.
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
        self.recurrent = bool(cfg["use_lstm"])
        self.cell_size = int(cfg["lstm_cell_size"]) if self.recurrent else 0
        #: Neurons each mask row covers, layer by layer (the recurrent units last).
        self.masked_layer_sizes = [*self.hidden_sizes, *([self.cell_size] if self.recurrent else [])]
        self.obs_sizes = None if cfg["obs_sizes"] is None else [int(x) for x in cfg["obs_sizes"]]
        self.action_sizes = None if cfg["action_sizes"] is None else [int(x) for x in cfg["action_sizes"]]
        self.continuous = isinstance(self.action_space, gym.spaces.Box)
        groups = space_groups(n, self.obs_sizes, self.action_sizes)  # never one cluster across spaces
        layout = self.sharing_spec.layout(n, self.masked_layer_sizes, groups)  # checks the options against N
        self.num_slices = layout.num_slices
        self.agent_id_input = layout.agent_id_input
        self.vf_share_layers = bool(cfg["vf_share_layers"])
        self.critic_input = cfg[CRITIC_INPUT_KEY]
        self.shared_critic = cfg[CRITIC_SHARING_KEY] == "shared"
        masked = set(layout.masked_networks)
        self.mask_actor = "actor" in masked or (self.vf_share_layers and bool(masked))
        self.mask_critic = not self.shared_critic and ("critic" in masked or (self.vf_share_layers and bool(masked)))

        self.central_dim = int(cfg["central_dim"] or 0)
        self.obs_dim = int(self.observation_space.shape[0]) - 1 - self.central_dim
        id_dim = n if self.agent_id_input else 0
        self.num_actions = int(self.action_space.shape[0]) if self.continuous else int(self.action_space.n)
        self.free_log_std = self.continuous and bool(cfg["free_log_std"])
        self.log_std_clip = float(cfg["log_std_clip_param"])
        head_out = self.num_actions * (2 if self.continuous and not self.free_log_std else 1)
        g, act = self.num_slices, cfg["fcnet_activation"]
        if self.recurrent:
            self.actor = GroupedMLP(g, self.obs_dim + id_dim, self.hidden_sizes, None, act)
            self.actor_cell = GroupedRecurrentCell(g, self.hidden_sizes[-1], self.cell_size, cfg[RECURRENT_CELL_KEY])
            self.actor_head = GroupedLinear(g, self.cell_size, head_out)
        else:
            self.actor = GroupedMLP(g, self.obs_dim + id_dim, self.hidden_sizes, head_out, act)  # with vf_share_layers: the trunk too
        if self.free_log_std:
            self.log_std = GroupedLogStd(g, self.num_actions)
        if self.vf_share_layers:
            self.vf_head = GroupedLinear(g, self.cell_size or self.hidden_sizes[-1], 1)
        else:
            critic_slices = 1 if self.shared_critic else g
            self.critic = GroupedMLP(critic_slices, self.obs_dim + self.central_dim + id_dim, self.hidden_sizes, 1, act)
        if cfg[WEIGHT_INIT_KEY] == "orthogonal":
            self.actor.orthogonal_(math.sqrt(2.0), 0.01)
            if self.recurrent:
                self.actor_cell.orthogonal_(1.0)
                self.actor_head.orthogonal_(0.01)
            if self.vf_share_layers:
                self.vf_head.orthogonal_(1.0)
            else:
                self.critic.orthogonal_(math.sqrt(2.0), 1.0)

        slices = np.zeros(n, np.int64) if layout.agent_slices is None else np.asarray(layout.agent_slices, np.int64)
        self.register_buffer("agent_slice", torch.as_tensor(slices).clone())
        self.register_buffer("agent_cluster", torch.full((n,), -1, dtype=torch.int64))
        table = torch.ones(max(layout.mask_rows, 1), sum(self.masked_layer_sizes), dtype=torch.bool)
        agent_mask = torch.zeros(n, dtype=torch.int64)
        if layout.mask_table is not None:
            table[: len(layout.mask_table)] = torch.as_tensor(np.asarray(layout.mask_table) > 0)
            agent_mask = torch.as_tensor(np.asarray(layout.agent_mask), dtype=torch.int64).clone()
        self.register_buffer("mask_table", table)
        self.register_buffer("agent_mask", agent_mask)
        self.register_buffer("sharing_method_code", torch.tensor(METHODS.index(self.sharing_spec.method)))
        self.register_buffer("engine_version", torch.tensor(ENGINE_VERSION))
        self._routing_cache = None  # (obs tensor, _Pass) of the last train forward

        sizes = self.action_sizes or [self.num_actions] * n
        self.has_action_masks = any(int(a) < self.num_actions for a in sizes)
        if self.has_action_masks:
            allowed = torch.arange(self.num_actions)[None, :] < torch.as_tensor([int(a) for a in sizes])[:, None]
            if self.continuous:  # dims an agent lacks: mean 0, log std 0, no gradient
                self.register_buffer("action_dim_valid", allowed)
            else:
                self.register_buffer("action_logit_penalty", torch.where(allowed, 0.0, FLOAT_MIN).to(torch.float32))

    def _validate(self, cfg: Dict[str, Any]) -> None:
        name = type(self).__name__
        if not cfg["agent_ids"]:
            raise ValueError(f"{name} needs model_config['agent_ids']: the env's agent ids in env order (configure_sharing() sets it).")
        n = len(cfg["agent_ids"])
        space = self.action_space
        if not (isinstance(space, gym.spaces.Discrete) or (isinstance(space, gym.spaces.Box) and len(space.shape) == 1)):
            raise ValueError(f"{name} supports Discrete and flat Box action spaces only, got {space}.")
        if len(getattr(self.observation_space, "shape", ()) or ()) != 1:
            raise ValueError(f"{name} needs a flat Box observation space (features + agent index), got {self.observation_space}.")
        for key in ("action_sizes", "obs_sizes"):
            if cfg[key] is not None and len(cfg[key]) != n:
                raise ValueError(f"model_config[{key!r}] needs one entry per agent id.")
        if cfg[CRITIC_INPUT_KEY] != "observation" and not cfg["central_dim"]:
            raise ValueError(f"model_config[{CRITIC_INPUT_KEY!r}] = {cfg[CRITIC_INPUT_KEY]!r} needs the centralised critic's "
                             "columns in the observations: set the method up with configure_sharing().")

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
        """``slice[targets[j]] = slice[sources[j]]`` in every sliced parameter (target nets too)."""
        src = torch.as_tensor(list(sources), dtype=torch.int64)
        dst = torch.as_tensor(list(targets), dtype=torch.int64)
        with torch.no_grad():
            for p in self.grouped_parameters(include_targets=True):
                p[dst.to(p.device)] = p[src.to(p.device)].clone()

    def grouped_parameters(self, include_targets: bool = False) -> List[torch.nn.Parameter]:
        """Parameters with one slice per parameter slice of the method (a shared critic's are not)."""
        params = self.parameters() if include_targets else (p for p in self.parameters() if p.requires_grad)
        return [p for p in params if p.shape[0] == self.num_slices]

    def parameter_counts(self) -> Dict[str, int]:
        """Trainable parameters allocated, and those of the slices agents use."""
        trainable = [p for p in self.parameters() if p.requires_grad]
        sliced = sum(p.numel() for p in self.grouped_parameters())
        unsliced = sum(p.numel() for p in trainable) - sliced
        return {"allocated": sliced + unsliced, "in_use": sliced // self.num_slices * len(self.used_slices()) + unsliced}

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

    def train(self, mode: bool = True):
        """RLlib switches the mode on every call (``eval()`` in each ``forward_exploration``,
        ``train()`` in each ``forward_train``), and torch walks every submodule each time. This
        module has no mode-dependent layer (no dropout, no batch norm); a switch to the mode it
        is already in returns at once."""
        if self.training == mode:
            return self
        return super().train(mode)

    # ---------------------------------------------------------------- recurrent state
    @override(TorchRLModule)
    def is_stateful(self) -> bool:
        return self.recurrent

    @override(TorchRLModule)
    def get_initial_state(self) -> Dict[str, torch.Tensor]:
        if not self.recurrent:
            return {}
        return {name: torch.zeros(self.cell_size) for name in self.actor_cell.state_names()}

    # ---------------------------------------------------------------- forward
    def _agent_masks(self, dtype: torch.dtype) -> torch.Tensor:
        """``[N, H]``: each agent's mask row, as ``dtype`` (per agent, then gathered per sample)."""
        return self.mask_table[self.agent_mask].to(dtype)

    def _inputs(self, batch: Dict[str, Any], critic: bool = True) -> _Pass:
        obs = batch[Columns.OBS]
        lead = obs.shape[:-1]
        obs = obs.reshape(-1, obs.shape[-1])  # time (recurrent batches) folded into the samples
        index = obs[:, -1].long()
        agent_id = torch.nn.functional.one_hot(index, self.num_agents).to(obs.dtype) if self.agent_id_input else None

        def features(columns):
            x = obs[:, :columns]
            return torch.cat([x, agent_id], dim=-1) if agent_id is not None else x

        routing = Routing(self.agent_slice[index], self.num_slices)  # one slice (FuPS, AdaPS, ...): nothing to route
        masks = self._agent_masks(obs.dtype)[index] if (self.mask_actor or self.mask_critic) else None
        routed_masks = masks if routing.single or masks is None else routing.scatter(masks)
        actor_in = features(self.obs_dim)
        actor_in = actor_in if routing.single else routing.scatter(actor_in)
        critic_in = critic_routing = critic_masks = None
        if critic and not self.vf_share_layers:
            critic_in = features(self.obs_dim + self.central_dim)
            if self.shared_critic:
                critic_routing = Routing.shared()
            else:
                critic_routing, critic_masks = routing, routed_masks if self.mask_critic else None
                critic_in = critic_in if routing.single else routing.scatter(critic_in)
        return _Pass(lead, index, actor_in, routing, routed_masks if self.mask_actor else None,
                     critic_in, critic_routing, critic_masks)

    def _in_order(self, x: torch.Tensor, routing: Routing) -> torch.Tensor:
        return x if routing.single else routing.gather(x)

    def _actor_trunk(self, p: _Pass, state_in: Optional[dict]):
        """The actor's last hidden output (routed layout) and, if recurrent, the state out."""
        x = self.actor.body(p.actor_in, p.routing, p.masks)
        if not self.recurrent:
            return x, None
        return self._unroll(self._in_order(x, p.routing), p, state_in)

    def _unroll(self, x: torch.Tensor, p: _Pass, state_in: dict):
        """Runs the recurrent cell over time, routed per sequence (the agent of a sequence is fixed)."""
        batch, steps = (p.lead[0], p.lead[1]) if len(p.lead) == 2 else (p.lead[0], 1)
        x = x.reshape(batch, steps, -1)
        seq_index = p.index.reshape(batch, steps)[:, 0]
        seq_routing = Routing(self.agent_slice[seq_index], self.num_slices)

        def routed(t):
            return t if seq_routing.single else seq_routing.scatter(t)

        mask = None
        if self.mask_actor:
            mask = routed(self._agent_masks(x.dtype)[seq_index][:, -self.cell_size :])
        state = {k: routed(v.to(x.dtype)) for k, v in state_in.items()}
        outputs = []
        for t in range(steps):
            state = self.actor_cell.step(routed(x[:, t]), state, seq_routing, mask)
            outputs.append(self._in_order(state["h"], seq_routing))
        out = torch.stack(outputs, dim=1).reshape(batch * steps, -1)
        state_out = {k: self._in_order(v, seq_routing) for k, v in state.items()}
        return (out if p.routing.single else p.routing.scatter(out)), state_out

    def _action_inputs(self, head_out: torch.Tensor, p: _Pass) -> torch.Tensor:
        """Head output in sample order as the action distribution's inputs."""
        out = self._in_order(head_out, p.routing)
        if not self.continuous:
            out = out + self.action_logit_penalty[p.index] if self.has_action_masks else out
            return out.reshape(*p.lead, -1)
        if self.free_log_std:
            mean, log_std = out, self.log_std.value[self.agent_slice[p.index]]
        else:
            mean, log_std = out.chunk(2, dim=-1)
        log_std = log_std.clamp(-self.log_std_clip, self.log_std_clip)
        if self.has_action_masks:
            valid = self.action_dim_valid[p.index]
            mean, log_std = torch.where(valid, mean, 0.0), torch.where(valid, log_std, 0.0)
        return torch.cat([mean, log_std], dim=-1).reshape(*p.lead, -1)

    def _head(self):
        return self.actor_head if self.recurrent else self.actor.head

    def _act(self, batch: Dict[str, Any], critic: bool) -> Tuple[Dict[str, Any], _Pass, torch.Tensor]:
        p = self._inputs(batch, critic=critic)
        trunk, state_out = self._actor_trunk(p, batch.get(Columns.STATE_IN))
        out = {Columns.ACTION_DIST_INPUTS: self._action_inputs(self._head()(trunk, p.routing), p)}
        if state_out is not None:
            out[Columns.STATE_OUT] = state_out
        return out, p, trunk

    @override(TorchRLModule)
    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        return self._act(batch, critic=False)[0]

    @override(TorchRLModule)
    def _forward_train(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        out, p, trunk = self._act(batch, critic=True)
        # Embeddings stay in the routed layout; compute_values() reuses this batch's routing.
        out[Columns.EMBEDDINGS] = trunk if self.vf_share_layers else self._critic_embeddings(p)
        self._routing_cache = (batch[Columns.OBS], p)
        return out

    def _critic_embeddings(self, p: _Pass) -> torch.Tensor:
        return self.critic.body(p.critic_in, p.critic_routing, p.critic_masks)

    def _values(self, embeddings: torch.Tensor, p: _Pass) -> torch.Tensor:
        if self.vf_share_layers:
            values = self._in_order(self.vf_head(embeddings, p.routing), p.routing)
        else:
            values = self._in_order(self.critic.head(embeddings, p.critic_routing), p.critic_routing)
        return values.reshape(p.lead)

    @override(ValueFunctionAPI)
    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        cache = self._routing_cache
        if embeddings is not None and cache is not None and cache[0] is batch[Columns.OBS]:
            return self._values(embeddings, cache[1])  # no second pass through the critic
        p = self._inputs(batch)
        if self.vf_share_layers:
            return self._values(self._actor_trunk(p, batch.get(Columns.STATE_IN))[0], p)
        return self._values(self._critic_embeddings(p), p)

    @override(InferenceOnlyAPI)
    def get_non_inference_attributes(self) -> List[str]:
        return ["vf_head"] if self.vf_share_layers else ["critic"]

    # ---------------------------------------------------------------- APPO / IMPALA
    @override(TargetNetworkAPI)
    def make_target_networks(self) -> None:
        if self.recurrent:
            raise ValueError("Recurrent policies (use_lstm) run with PPO only here: APPO and IMPALA need a recurrent "
                             "target network, which the sharing engine does not build.")
        self._target_actor = make_target_network(self.actor)
        if self.free_log_std:
            self._target_log_std = make_target_network(self.log_std)

    @override(TargetNetworkAPI)
    def get_target_network_pairs(self):
        pairs = [(self.actor, self._target_actor)]
        return pairs + [(self.log_std, self._target_log_std)] if self.free_log_std else pairs

    @override(TargetNetworkAPI)
    def forward_target(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        p = self._inputs(batch, critic=False)
        head_out = self._target_actor(p.actor_in, p.routing, p.masks)
        dist_inputs = self._action_inputs(head_out, p)
        if self.free_log_std:  # the target's own log std
            mean, _ = dist_inputs.chunk(2, dim=-1)
            log_std = self._target_log_std.value[self.agent_slice[p.index]].clamp(-self.log_std_clip, self.log_std_clip)
            if self.has_action_masks:
                log_std = torch.where(self.action_dim_valid[p.index], log_std, 0.0)
            dist_inputs = torch.cat([mean, log_std.reshape(*p.lead, -1)], dim=-1)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: dist_inputs}


class AdaPSModule(ParameterSharingModule):
    """The engine with AdaPS as its default method: one set of parameters, neuron masks per cluster.

    Drop it into an RLlib config with ``model_config={"agent_ids": [...], **adaps_options}``
    and ``SharingCallback`` (the README's manual route); masks stay all ones until the callback
    installs the clusters' masks.
    """

    default_model_config = {METHOD_KEY: "adaps"}
