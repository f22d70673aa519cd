"""Roll out a checkpoint and report mean returns, overall and per agent group."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, Optional

import numpy as np
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_RL_MODULE
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner

from rllib_adaps.module import AdaPSModule


def agent_groups(runner: MultiAgentEnvRunner, agent_ids) -> Dict[str, str]:
    """Agent -> group name: its module, or its AdaPS cluster within a shared module."""
    groups = {}
    for agent in agent_ids:
        module_id = runner.config.policy_mapping_fn(agent, None)
        module = runner.module[module_id]
        if isinstance(module, AdaPSModule) and module.masking == "cluster" and module.is_clustered():
            groups[agent] = f"cluster_{int(module.agent_groups[module.agent_ids.index(agent)])}"
        else:
            groups[agent] = module_id
    return groups


def evaluate(checkpoint: str, episodes: int = 10, env: Optional[str] = None, explore: bool = False) -> Dict[str, Any]:
    """Restores the Algorithm at ``checkpoint`` and runs ``episodes`` episodes on the driver."""
    algo = Algorithm.from_checkpoint(checkpoint)
    try:
        config = algo.config.copy(copy_frozen=False)
        if env is not None:
            config.environment(env)
        config.env_runners(num_envs_per_env_runner=1)
        state = algo.learner_group.get_state(components=f"{COMPONENT_LEARNER}/{COMPONENT_RL_MODULE}")
        module_state = state[COMPONENT_LEARNER][COMPONENT_RL_MODULE]
    finally:
        algo.stop()
    runner = MultiAgentEnvRunner(config=config)
    try:
        runner.module.set_state(module_state)
        done = runner.sample(num_episodes=episodes, explore=explore)
        agent_ids = runner.env.envs[0].unwrapped.possible_agents
        groups = agent_groups(runner, agent_ids)
    finally:
        runner.stop()
    totals = [float(ep.get_return()) for ep in done]
    per_group: Dict[str, list] = defaultdict(list)
    for ep in done:
        for agent, sa_episode in ep.agent_episodes.items():
            per_group[groups[agent]].append(float(sa_episode.get_return()))
    members: Dict[str, list] = defaultdict(list)
    for agent, group in groups.items():
        members[group].append(agent)
    return {
        "episodes": len(done),
        "mean_return": float(np.mean(totals)),
        "mean_return_per_group": {g: float(np.mean(v)) for g, v in sorted(per_group.items())},
        "groups": {g: members[g] for g in sorted(members)},
    }
