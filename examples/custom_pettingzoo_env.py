"""Your own PettingZoo env with agents of different kinds, trained with AdaPS.

Scouts see 4 numbers and have 5 actions; carriers see 6 numbers and have 3 actions. One
shared network serves both: observations are zero-padded to 6 (+ the agent index), and the
actions a carrier does not have are masked out of its logits (never silently remapped).

    python examples/custom_pettingzoo_env.py --iters 6
"""

import argparse
import functools

import gymnasium as gym
import numpy as np
import ray
from pettingzoo import ParallelEnv
from ray.rllib.algorithms.ppo import PPOConfig
from ray.tune.registry import register_env

import rllib_adaps
from rllib_adaps.envs import OrderedParallelEnv


class ScoutsAndCarriers(ParallelEnv):
    """Agents move on a line towards a kind-specific target they cannot see directly."""

    metadata = {"name": "scouts_and_carriers_v0"}

    def __init__(self, scouts=3, carriers=3, max_steps=40):
        self.kinds = ["scout"] * scouts + ["carrier"] * carriers
        self.possible_agents = [f"{kind}_{i}" for i, kind in enumerate(self.kinds)]
        self.max_steps = max_steps
        self._obs = {a: gym.spaces.Box(-5, 5, (4 if k == "scout" else 6,), np.float32) for a, k in zip(self.possible_agents, self.kinds)}
        self._act = {a: gym.spaces.Discrete(5 if k == "scout" else 3) for a, k in zip(self.possible_agents, self.kinds)}
        self.true_agent_types = {a: int(k == "carrier") for a, k in zip(self.possible_agents, self.kinds)}

    @functools.lru_cache(None)
    def observation_space(self, agent):
        return self._obs[agent]

    @functools.lru_cache(None)
    def action_space(self, agent):
        return self._act[agent]

    def reset(self, seed=None, options=None):
        self.rng = np.random.default_rng(seed)
        self.agents = list(self.possible_agents)
        self.pos = self.rng.uniform(-2, 2, len(self.agents))
        self.t = 0
        return self._observe(), {a: {} for a in self.agents}

    def _observe(self):
        obs = {}
        for i, (agent, kind) in enumerate(zip(self.possible_agents, self.kinds)):
            base = [self.pos[i], self.pos[i] - 1.0, self.pos[i] + 1.0, self.t / self.max_steps]
            obs[agent] = np.array(base if kind == "scout" else base + [self.pos.mean(), 0.0], np.float32).clip(-5, 5)
        return obs

    def step(self, actions):
        moves = np.array([0.0, -0.2, 0.2, -0.5, 0.5])
        for i, agent in enumerate(self.possible_agents):
            self.pos[i] += moves[actions[agent]]
        self.t += 1
        targets = np.where(np.array(self.kinds) == "scout", 1.0, -1.0)
        rewards = {a: float(-abs(self.pos[i] - targets[i])) for i, a in enumerate(self.possible_agents)}
        truncated = self.t >= self.max_steps
        if truncated:
            self.agents = []
        flags = {a: truncated for a in self.possible_agents}
        return self._observe(), rewards, {a: False for a in self.possible_agents}, flags, {a: {} for a in self.possible_agents}


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--iters", type=int, default=6)
    args = parser.parse_args()

    register_env("scouts_and_carriers", lambda cfg: OrderedParallelEnv(ScoutsAndCarriers(**cfg)))
    config = (
        PPOConfig()
        .environment("scouts_and_carriers", env_config={"scouts": 3, "carriers": 3})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=800, minibatch_size=400, num_epochs=4)
    )
    config = rllib_adaps.configure_sharing(config, "adaps", identity_env_steps=800)
    ray.init(num_cpus=2, include_dashboard=False)
    algo = config.build_algo()
    for i in range(args.iters):
        result = algo.train()
        pre = result["identity_pretraining"]
        print(f"iter {i + 1}: return {result['env_runners']['episode_return_mean']:.2f}"
              + (f", clusters {pre['labels']} (ARI {pre['adjusted_rand_index']:.2f})" if pre["done"] else ""))
    algo.stop()
