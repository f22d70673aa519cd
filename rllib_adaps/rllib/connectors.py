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


def padded_index_space(spaces: Sequence[gym.spaces.Box], obs_dim: int, num_agents: int) -> gym.spaces.Box:
    """One Box covering every agent's padded observation plus the index column."""
    lows = [np.concatenate([s.low.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces]
    highs = [np.concatenate([s.high.ravel(), np.zeros(obs_dim - s.shape[0])]) for s in spaces]
    low = np.concatenate([np.min(lows, axis=0), [0.0]]).astype(np.float32)
    high = np.concatenate([np.max(highs, axis=0), [num_agents - 1]]).astype(np.float32)
    return gym.spaces.Box(low, high, dtype=np.float32)


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
        **kwargs,
    ):
        self.agent_ids = list(agent_ids)
        self.obs_dim = int(obs_dim)
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
        union = padded_index_space(list(input_observation_space.spaces.values()), self.obs_dim, len(self.agent_ids))
        return gym.spaces.Dict({agent: union for agent in input_observation_space.spaces})

    def recompute_output_action_space(self, input_observation_space, input_action_space):
        """One ``Discrete(largest)`` for every agent: the module's action space. Actions an agent
        lacks get no probability (the module masks their logits), so none reaches the env."""
        if not isinstance(input_action_space, gym.spaces.Dict):
            return input_action_space
        largest = gym.spaces.Discrete(max(int(space.n) for space in input_action_space.spaces.values()))
        return gym.spaces.Dict({agent: largest for agent in input_action_space.spaces})

    def preprocess(self, observations: Dict[str, Any], episode) -> Dict[str, np.ndarray]:
        agents = list(observations)
        out = np.zeros((len(agents), self.obs_dim + 1), dtype=np.float32)
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
        return dict(zip(agents, out))


class AgentIndexConnector:
    """Picklable factory for ``config.env_runners(env_to_module_connector=...)``."""

    def __init__(self, agent_ids: Sequence[str], obs_dim: int):
        self.agent_ids = list(agent_ids)
        self.obs_dim = int(obs_dim)

    def __call__(self, env=None, spaces=None, device=None) -> AgentIndexObservations:
        return AgentIndexObservations(agent_ids=self.agent_ids, obs_dim=self.obs_dim)
