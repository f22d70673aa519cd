"""``AdaPSModule``: one shared actor-critic MLP whose hidden neurons are masked per agent.

Every observation reaching the module carries the agent's index in its last column (added
by ``AgentIndexObservations``). The module looks up that agent's mask row in a buffer table
and multiplies each hidden layer by it: one forward pass for all agents, whatever the number
of groups. The same class serves every sharing method:

| method   | ``masking``  | mask rows                                  |
|----------|--------------|--------------------------------------------|
| FuPS     | ``"none"``   | none (no multiply at all)                  |
| FuPS+id  | ``"none"``   | none; ``agent_id_input=True`` appends a one-hot id |
| SNP-PS   | ``"random"`` | fixed random pruning mask per agent        |
| AdaPS    | ``"cluster"``| all ones until clustering, then its cluster's mask |
| NoPS/SePS| ``"none"``   | one module per agent / per cluster         |

Masks, the agent -> group table and the action-availability table are registered buffers:
they are part of ``state_dict()``, so they travel with the weights to every EnvRunner and
into every checkpoint.
"""

from __future__ import annotations

from typing import Any, Dict, List, Optional, Sequence, Tuple

import numpy as np
import torch
from ray.rllib.core.columns import Columns
from ray.rllib.core.learner.utils import make_target_network
from ray.rllib.core.rl_module.apis import (
    TARGET_NETWORK_ACTION_DIST_INPUTS,
    TargetNetworkAPI,
    ValueFunctionAPI,
)
from ray.rllib.core.rl_module.torch import TorchRLModule
from ray.rllib.utils.torch_utils import FLOAT_MIN

from rllib_adaps.masks import check_threshold, random_pruning_masks

MASKING_MODES = ("none", "random", "cluster")
MASKABLE_NETWORKS = ("actor", "critic")

#: Defaults of the module's own ``model_config`` keys (RLlib's keys come first).
DEFAULT_MODEL_CONFIG: dict[str, Any] = {
    "fcnet_hiddens": [64, 64],
    "fcnet_activation": "relu",
    "vf_share_layers": False,
    # Agent ids in env order; row i of every table belongs to agent_ids[i].
    "agent_ids": None,
    # Valid actions of each agent (None: all agents use the whole action space).
    "action_sizes": None,
    "agent_id_input": False,
    "masking": "none",
    "masked_networks": ["actor", "critic"],
    "mask_threshold": 0.2,
    "pruning_rate": 0.5,
    "mask_seed": 0,
    # Set by configure_sharing(): recorded in checkpoints, checked when a state is loaded.
    "sharing_method": None,
}

#: Method names in the order of their codes in the ``sharing_method_code`` buffer.
METHOD_CODES = ("nops", "fups", "fups_id", "seps", "snp", "adaps")

_ACTIVATIONS = {"relu": torch.nn.ReLU, "tanh": torch.nn.Tanh, "elu": torch.nn.ELU, "silu": torch.nn.SiLU, "swish": torch.nn.SiLU}


class MaskedMLP(torch.nn.Module):
    """An MLP whose hidden activations are multiplied by a per-sample 0/1 mask.

    Multiplying a neuron's output by 0 equals zeroing its weight row and bias (for
    activations with f(0) = 0, such as ReLU and tanh) and stops its gradient for that sample.
    """

    def __init__(self, in_dim: int, hiddens: Sequence[int], out_dim: Optional[int], activation: str):
        super().__init__()
        sizes = [in_dim, *hiddens]
        self.hidden = torch.nn.ModuleList(torch.nn.Linear(a, b) for a, b in zip(sizes[:-1], sizes[1:]))
        self.activation = _ACTIVATIONS[activation]()
        self.hidden_sizes = list(hiddens)
        self.out = torch.nn.Linear(sizes[-1], out_dim) if out_dim is not None else None

    def forward(self, x: torch.Tensor, masks: Optional[torch.Tensor] = None) -> torch.Tensor:
        """``masks``: ``[B, sum(hidden_sizes)]`` rows, or None for no masking."""
        offset = 0
        for layer, size in zip(self.hidden, self.hidden_sizes):
            x = self.activation(layer(x))
            if masks is not None:
                x = x * masks[:, offset : offset + size]
            offset += size
        return x if self.out is None else self.out(x)


class AdaPSModule(TorchRLModule, ValueFunctionAPI, TargetNetworkAPI):
    """One shared actor-critic network; per-agent neuron masks select each agent's sub-network.

    Works with PPO (``ValueFunctionAPI``) and APPO/IMPALA (``TargetNetworkAPI`` too). Reads
    RLlib's ``fcnet_hiddens``, ``fcnet_activation``, ``vf_share_layers`` and its own keys
    (see ``DEFAULT_MODEL_CONFIG``). The observation space is the padded observation plus one
    column holding the agent index; the action space is ``Discrete`` (the largest of all
    agents'), with actions an agent does not have masked out of its logits.
    """

    def setup(self):
        cfg = {**DEFAULT_MODEL_CONFIG, **(self.model_config or {})}
        self._validate(cfg)
        self.agent_ids: List[str] = list(cfg["agent_ids"])
        self.num_agents = len(self.agent_ids)
        self.masking: str = cfg["masking"]
        self.agent_id_input = bool(cfg["agent_id_input"])
        hiddens = [int(h) for h in cfg["fcnet_hiddens"]]
        activation = cfg["fcnet_activation"]
        self.vf_share_layers = bool(cfg["vf_share_layers"])
        masked = set(cfg["masked_networks"]) if self.masking != "none" else set()
        self.mask_actor = "actor" in masked
        self.mask_critic = "critic" in masked or (self.vf_share_layers and self.mask_actor)
        self.hidden_sizes = hiddens

        obs_dim = int(self.observation_space.shape[0]) - 1
        in_dim = obs_dim + (self.num_agents if self.agent_id_input else 0)
        num_actions = int(self.action_space.n)
        if self.vf_share_layers:
            self.trunk = MaskedMLP(in_dim, hiddens, None, activation)
            self.pi_head = torch.nn.Linear(hiddens[-1], num_actions)
            self.vf_head = torch.nn.Linear(hiddens[-1], 1)
        else:
            self.actor = MaskedMLP(in_dim, hiddens, num_actions, activation)
            self.critic = MaskedMLP(in_dim, hiddens, 1, activation)

        total_hidden = sum(hiddens)
        if self.masking == "random":
            rows = np.concatenate(
                random_pruning_masks(self.num_agents, hiddens, cfg["pruning_rate"], cfg["mask_seed"]), axis=1
            )
        else:
            rows = np.ones((self.num_agents, total_hidden), dtype=np.float32)
        self.register_buffer("actor_masks", torch.as_tensor(rows, dtype=torch.float32).clone())
        self.register_buffer("critic_masks", torch.as_tensor(rows, dtype=torch.float32).clone())
        # Cluster of each agent (-1: not clustered yet). Restored with every checkpoint.
        self.register_buffer("agent_groups", torch.full((self.num_agents,), -1, dtype=torch.int64))
        method = cfg["sharing_method"]
        code = METHOD_CODES.index(method) if method in METHOD_CODES else -1
        self.register_buffer("sharing_method_code", torch.tensor(code, dtype=torch.int64))

        action_sizes = cfg["action_sizes"]
        self.has_action_masks = action_sizes is not None and any(int(n) < num_actions for n in action_sizes)
        if self.has_action_masks:
            allowed = torch.arange(num_actions)[None, :] < torch.as_tensor([int(n) for n in action_sizes])[:, None]
            penalty = torch.where(allowed, 0.0, FLOAT_MIN)
            self.register_buffer("action_logit_penalty", penalty.to(torch.float32))

    def _validate(self, cfg: Dict[str, Any]) -> None:
        if not cfg["agent_ids"]:
            raise ValueError(
                "AdaPSModule needs model_config['agent_ids']: the env's agent ids in env order "
                "(configure_sharing() sets it)."
            )
        if cfg["masking"] not in MASKING_MODES:
            raise ValueError(f"model_config['masking'] must be one of {MASKING_MODES}, got {cfg['masking']!r}.")
        unknown = set(cfg["masked_networks"]) - set(MASKABLE_NETWORKS)
        if unknown or not cfg["masked_networks"]:
            raise ValueError(
                f"model_config['masked_networks'] must be a non-empty subset of {MASKABLE_NETWORKS}, "
                f"got {cfg['masked_networks']!r}."
            )
        check_threshold(cfg["mask_threshold"])
        if cfg["fcnet_activation"] not in _ACTIVATIONS:
            raise ValueError(f"fcnet_activation must be one of {sorted(_ACTIVATIONS)}, got {cfg['fcnet_activation']!r}.")
        if not hasattr(self.action_space, "n"):
            raise ValueError(f"AdaPSModule supports Discrete action spaces only, got {self.action_space}.")
        if len(getattr(self.observation_space, "shape", ()) or ()) != 1:
            raise ValueError(
                f"AdaPSModule needs a flat Box observation space (features + agent index), got {self.observation_space}."
            )
        sizes = cfg["action_sizes"]
        if sizes is not None and len(sizes) != len(cfg["agent_ids"]):
            raise ValueError("model_config['action_sizes'] needs one entry per agent id.")

    # ---------------------------------------------------------------- masks API
    def set_agent_masks(
        self,
        actor_masks: np.ndarray,
        critic_masks: Optional[np.ndarray] = None,
        agent_groups: Optional[np.ndarray] = None,
    ) -> None:
        """Installs ``[N, sum(hiddens)]`` mask rows (and the agent -> group table)."""
        expected = (self.num_agents, sum(self.hidden_sizes))
        for name, rows in (("actor_masks", actor_masks), ("critic_masks", critic_masks)):
            if rows is None:
                continue
            rows = torch.as_tensor(np.asarray(rows), dtype=torch.float32)
            if tuple(rows.shape) != expected:
                raise ValueError(f"{name} must have shape {expected}, got {tuple(rows.shape)}.")
            getattr(self, name).copy_(rows)
        if agent_groups is not None:
            self.agent_groups.copy_(torch.as_tensor(np.asarray(agent_groups), dtype=torch.int64))

    def set_state(self, state) -> None:
        """Loads a state after checking it was written for the same agents and method.

        A checkpoint of another sharing method or agent count would otherwise load partly
        (RLlib loads non-strictly) or fail deep inside torch with a shape error.
        """
        rows = state.get("actor_masks") if isinstance(state, dict) else None
        if rows is not None and len(rows) != self.num_agents:
            raise ValueError(
                f"This state holds masks for {len(rows)} agents, but this module serves {self.num_agents} "
                f"({self.agent_ids[:3]}...): restore checkpoints into a run of the same env and agent count."
            )
        code = state.get("sharing_method_code") if isinstance(state, dict) else None
        own = int(self.sharing_method_code)
        if code is not None and int(code) >= 0 and own >= 0 and int(code) != own:
            raise ValueError(
                f"This state was written by a '{METHOD_CODES[int(code)]}' run, but this run uses "
                f"'{METHOD_CODES[own]}': restore checkpoints into a run of the same sharing method."
            )
        super().set_state(state)

    def is_clustered(self) -> bool:
        return bool((self.agent_groups >= 0).all())

    # ---------------------------------------------------------------- forward
    def _split_obs(self, batch: Dict[str, Any]) -> Tuple[torch.Tensor, torch.Tensor]:
        obs = batch[Columns.OBS]
        index = obs[..., -1].long()
        features = obs[..., :-1]
        if self.agent_id_input:
            features = torch.cat(
                [features, torch.nn.functional.one_hot(index, self.num_agents).to(features.dtype)], dim=-1
            )
        return features, index

    def _rows(self, table: torch.Tensor, index: torch.Tensor, use: bool) -> Optional[torch.Tensor]:
        return table[index] if use else None

    def _logits(self, features, index, actor=None) -> torch.Tensor:
        masks = self._rows(self.actor_masks, index, self.mask_actor)
        if self.vf_share_layers:
            trunk = self.trunk if actor is None else actor[0]
            head = self.pi_head if actor is None else actor[1]
            logits = head(trunk(features, masks))
        else:
            logits = (self.actor if actor is None else actor)(features, masks)
        if self.has_action_masks:
            logits = logits + self.action_logit_penalty[index]
        return logits

    def _forward(self, batch: Dict[str, Any], **kwargs) -> Dict[str, Any]:
        features, index = self._split_obs(batch)
        return {Columns.ACTION_DIST_INPUTS: self._logits(features, index)}

    def compute_values(self, batch: Dict[str, Any], embeddings: Optional[Any] = None) -> torch.Tensor:
        features, index = self._split_obs(batch)
        masks = self._rows(self.critic_masks, index, self.mask_critic)
        if self.vf_share_layers:
            return self.vf_head(self.trunk(features, masks)).squeeze(-1)
        return self.critic(features, masks).squeeze(-1)

    # ---------------------------------------------------------------- APPO / IMPALA
    def make_target_networks(self) -> None:
        if self.vf_share_layers:
            self._target_actor = torch.nn.ModuleList(
                [make_target_network(self.trunk), make_target_network(self.pi_head)]
            )
        else:
            self._target_actor = make_target_network(self.actor)

    def get_target_network_pairs(self):
        if self.vf_share_layers:
            return [(self.trunk, self._target_actor[0]), (self.pi_head, self._target_actor[1])]
        return [(self.actor, self._target_actor)]

    def forward_target(self, batch: Dict[str, Any]) -> Dict[str, Any]:
        features, index = self._split_obs(batch)
        return {TARGET_NETWORK_ACTION_DIST_INPUTS: self._logits(features, index, actor=self._target_actor)}
