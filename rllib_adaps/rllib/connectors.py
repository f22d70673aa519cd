"""Env-to-module connector that pads observations and appends the agent's index.

Every sharing method routes samples through modules that need to know which agent a sample
belongs to (mask row, one-hot id, allowed actions), also on the Learner. The connector writes
the processed observation back into the episode, so the index travels with the sample.
"""

from __future__ import annotations

from typing import Any, Dict, Optional, Sequence

import gymnasium as gym
import numpy as np
from ray.rllib.connectors.env_to_module.observation_preprocessor import (
    MultiAgentObservationPreprocessor,
)


def padded_index_space(spaces: Sequence[gym.spaces.Box], obs_dim: int, num_agents: int,
                       central: Optional[gym.spaces.Box] = None) -> gym.spaces.Box:
    """One Box covering every agent's padded observation, the centralised critic's columns
    (``central``, if any) and the index column."""
    lows = [np.concatenate([s.low.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces]
    highs = [np.concatenate([s.high.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces]
    central_low = [] if central is None else central.low.ravel()
    central_high = [] if central is None else central.high.ravel()
    low = np.concatenate([np.min(lows, axis=0), central_low, [0.0]]).astype(np.float32)
    high = np.concatenate([np.max(highs, axis=0), central_high, [num_agents - 1]]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


def joint_observation_space(spaces: Sequence[gym.spaces.Box], obs_dim: int) -> gym.spaces.Box:
    """Every agent's padded observation, in agent order (a centralised critic's input)."""
    low = np.concatenate([np.concatenate([s.low.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces])
    high = np.concatenate([np.concatenate([s.high.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces])
    return gym.spaces.Box(low.astype(np.float32), high.astype(np.float32), dtype=np.float32)


class ContinuousActions:
    """Agents' Box actions behind the engine's one ``Box(-1, 1, (largest,))``.

    The module acts in ``[-1, 1]`` (RLlib's ``normalize_actions``) on the largest number of
    dims; each agent's own dims are clipped to ``[-1, 1]`` and scaled to its bounds, as RLlib's
    ``unsquash_action`` does, all agents in one array operation.
    """

    def __init__(self, spaces: Sequence[gym.spaces.Box]):
        self.dims = np.asarray([int(s.shape[0]) for s in spaces])
        width = int(self.dims.max())
        self.low = np.zeros((len(spaces), width), np.float32)
        self.high = np.zeros((len(spaces), width), np.float32)
        for i, space in enumerate(spaces):
            self.low[i, : self.dims[i]], self.high[i, : self.dims[i]] = space.low, space.high
        self.equal_dims = bool((self.dims == width).all())
        self.module_space = gym.spaces.Box(-1.0, 1.0, (width,), np.float32)

    def to_env(self, actions: np.ndarray) -> np.ndarray:
        """``[..., N, largest]`` module actions -> env actions (dims an agent lacks come out 0)."""
        unit = (np.clip(actions, -1.0, 1.0) + 1.0) / 2.0
        return (self.low + unit * (self.high - self.low)).astype(np.float32)


class AgentIndexObservations(MultiAgentObservationPreprocessor):
    """Pads each agent's flat observation to ``obs_dim`` and appends its index (float).

    Vectorised over the agents of a step: agents with observations of one size are stacked
    and written into one output array in a single assignment (one group per distinct size,
    so one group for envs whose agents all observe the same size).
    """

    def __init__(
        self,
        input_observation_space: Optional[gym.Space] = None,
        input_action_space: Optional[gym.Space] = None,
        *,
        agent_ids: Sequence[str],
        obs_dim: int,
        joint_observations: bool = False,
        **kwargs,
    ):
        self.agent_ids = list(agent_ids)
        self.obs_dim = int(obs_dim)
        #: Append every agent's padded observation (the centralised critic's input) after the own one.
        self.joint_observations = bool(joint_observations)
        self._index = {agent: float(i) for i, agent in enumerate(self.agent_ids)}
        super().__init__(input_observation_space, input_action_space, **kwargs)

    def recompute_output_observation_space(self, input_observation_space, input_action_space):
        """One space for every agent: the union of their padded spaces plus the index column.

        It is the module's observation space (``configure_sharing`` builds it the same way),
        and RLlib requires agents mapped to one module to have equal spaces.
        """
        if not isinstance(input_observation_space, gym.spaces.Dict):
            return input_observation_space
        for agent, space in input_observation_space.spaces.items():
            if agent not in self._index:
                raise ValueError(f"Agent {agent!r} is not among the agents this run was set up for: {self.agent_ids}.")
            if len(space.shape) != 1 or int(space.shape[0]) > self.obs_dim:
                raise ValueError(
                    f"Agent {agent!r} has observation space {space}; a flat Box of at most {self.obs_dim} dims is needed."
                )
        spaces = list(input_observation_space.spaces.values())
        central = joint_observation_space([input_observation_space[a] for a in self.agent_ids], self.obs_dim) if self.joint_observations else None
        union = padded_index_space(spaces, self.obs_dim, len(self.agent_ids), central)
        return gym.spaces.Dict({agent: union for agent in input_observation_space.spaces})

    def recompute_output_action_space(self, input_observation_space, input_action_space):
        """One ``Discrete(largest)`` for every agent: the module's action space. Actions an agent
        lacks get no probability (the module masks their logits), so none reaches the env.
        Box actions: the module's ``Box(-1, 1)`` (RLlib's ``NormalizeAndClipActions`` scales
        each agent's action to its own bounds)."""
        if not isinstance(input_action_space, gym.spaces.Dict):
            return input_action_space
        spaces = list(input_action_space.spaces.values())
        if isinstance(spaces[0], gym.spaces.Box):
            largest = ContinuousActions(spaces).module_space
        else:
            largest = gym.spaces.Discrete(max(int(space.n) for space in spaces))
        return gym.spaces.Dict({agent: largest for agent in input_action_space.spaces})

    def preprocess(self, observations: Dict[str, Any], episode) -> Dict[str, np.ndarray]:
        agents = list(observations)
        central = len(self.agent_ids) * self.obs_dim if self.joint_observations else 0
        out = np.zeros((len(agents), self.obs_dim + central + 1), dtype=np.float32)
        out[:, -1] = [self._index[a] for a in agents]
        values = list(observations.values())
        sizes = {np.shape(v)[-1] for v in values}
        if len(sizes) == 1:  # the common case: one stack, one assignment
            size = sizes.pop()
            out[:, :size] = np.stack(values)
        else:
            for size in sizes:
                rows = [i for i, v in enumerate(values) if np.shape(v)[-1] == size]
                out[rows, :size] = np.stack([values[i] for i in rows])
        if central:  # every agent's row of the joint observation (zeros for agents not observing)
            joint = np.zeros((len(self.agent_ids), self.obs_dim), np.float32)
            joint[out[:, -1].astype(np.int64)] = out[:, : self.obs_dim]
            out[:, self.obs_dim : self.obs_dim + central] = joint.reshape(1, -1)
        return dict(zip(agents, out))


class AgentIndexConnector:
    """Picklable factory for ``config.env_runners(env_to_module_connector=...)``."""

    def __init__(self, agent_ids: Sequence[str], obs_dim: int, joint_observations: bool = False):
        self.agent_ids = list(agent_ids)
        self.obs_dim = int(obs_dim)
        self.joint_observations = bool(joint_observations)

    def __call__(self, env=None, spaces=None, device=None) -> AgentIndexObservations:
        return AgentIndexObservations(agent_ids=self.agent_ids, obs_dim=self.obs_dim, joint_observations=self.joint_observations)
