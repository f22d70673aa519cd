"""An RLlib ``MultiAgentEnv`` over a PettingZoo ``ParallelEnv`` that keeps the env's agent order.

RLlib's own ``ParallelPettingZooEnv`` builds its agent lists from a set, so the order comes
out scrambled; everything in this package that indexes agents (one-hot ids, mask rows, NoPS
module ids) relies on the env's own order instead.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
from pettingzoo import ParallelEnv
from ray.rllib.env.multi_agent_env import MultiAgentEnv


class OrderedParallelEnv(MultiAgentEnv):
    """Wraps a PettingZoo ``ParallelEnv`` for RLlib, agent order and spaces unchanged."""

    def __init__(self, par_env: ParallelEnv):
        super().__init__()
        self.par_env = par_env
        self.possible_agents = list(par_env.possible_agents)
        self.agents = list(self.possible_agents)
        self.observation_spaces = {a: par_env.observation_space(a) for a in self.possible_agents}
        self.action_spaces = {a: par_env.action_space(a) for a in self.possible_agents}
        # Old-style Dict spaces, which some RLlib utilities still read.
        self.observation_space = gym.spaces.Dict(self.observation_spaces)
        self.action_space = gym.spaces.Dict(self.action_spaces)

    @property
    def true_agent_types(self) -> dict[str, int] | None:
        """Ground-truth agent types of the wrapped env, if it has them (evaluation only)."""
        return getattr(self.par_env, "true_agent_types", None)

    @property
    def own_observation_features(self) -> tuple[int, ...] | None:
        """Observation columns the wrapped env declares as the agent's own (see ``TypedParallelEnv``)."""
        return getattr(self.par_env, "own_observation_features", None)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        obs, infos = self.par_env.reset(seed=seed, options=options)
        self.agents = list(self.par_env.agents)
        return obs, infos or {}

    def step(self, action_dict: dict[str, Any]):
        obs, rewards, terminateds, truncateds, infos = self.par_env.step(action_dict)
        self.agents = list(self.par_env.agents)
        terminateds = dict(terminateds)
        truncateds = dict(truncateds)
        terminateds["__all__"] = bool(terminateds) and all(terminateds.values())
        truncateds["__all__"] = bool(truncateds) and all(truncateds.values())
        return obs, rewards, terminateds, truncateds, infos

    def render(self):
        return self.par_env.render()

    def close(self):
        self.par_env.close()
