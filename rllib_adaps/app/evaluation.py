"""Roll out a checkpoint and report mean returns, overall and per agent group, with sampled or greedy actions."""

from __future__ import annotations

from collections import defaultdict
from typing import Any, Dict, Optional, Sequence

import numpy as np
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.single_agent_env_runner import SingleAgentEnvRunner

from rllib_adaps.rllib.test_returns import agent_returns
from rllib_adaps.rllib.module_ids import SHARED_MODULE_ID, engine_module, sharing_module_id
from rllib_adaps.rllib.checkpoints import AlgorithmCheckpoint, read_checkpoint


def agent_groups(runner, agent_ids) -> Dict[str, str]:
    """Agent -> group name: its cluster (AdaPS, SePS), itself (NoPS), or ``shared``."""
    module = engine_module(runner, sharing_module_id(runner.config))
    index = [module.agent_ids.index(a) for a in agent_ids]
    if module.is_clustered():
        return {a: f"cluster_{int(module.agent_cluster[i])}" for a, i in zip(agent_ids, index)}
    slices = module.agent_slice.tolist()
    if len(set(slices)) == len(slices) > 1:
        return {a: a for a in agent_ids}
    return {a: SHARED_MODULE_ID for a in agent_ids}


def check_env_override(stored: AlgorithmCheckpoint, env: str) -> None:
    """``--env``: another env must take the checkpoint's env_config and have its agents."""
    from rllib_adaps.app.experiment import check_env_name
    from rllib_adaps.envs import ENV_CLASSES, EnvConfigError, make_parallel_env

    check_env_name(env, "the command line", where="--env")
    if env == stored.env or env not in ENV_CLASSES:
        return
    trained = f"The checkpoint was trained on {stored.env!r} with env_config {stored.env_config}"
    try:
        agents = list(make_parallel_env(env, stored.env_config).possible_agents)
    except EnvConfigError as err:
        raise EnvConfigError(f"{trained}; --env {env} cannot run with that env_config ({err}).") from None
    if agents != stored.agent_ids:
        raise EnvConfigError(f"{trained}, for agents {stored.agent_ids}; --env {env} has agents {agents}. The module "
                             "serves the agents it was trained for.")


#: How actions are chosen during evaluation: ``sampled`` draws them from the policy's
#: distribution, as the EnvRunners do in training (so the numbers compare with the training
#: metrics); ``greedy`` takes the most likely action.
MODES = ("sampled", "greedy")


def evaluate_modes(
    checkpoint: str | AlgorithmCheckpoint, episodes: int = 10, env: Optional[str] = None, modes: Sequence[str] = MODES
) -> Dict[str, Dict[str, Any]]:
    """Runs ``episodes`` episodes of the checkpoint's policy on one local EnvRunner (no Ray
    cluster, no Algorithm) for each of ``modes`` (``MODES``): ``{mode: report}``.

    Each report: ``mode``, ``episodes``, ``mean_return`` (sum over agents, per episode),
    ``mean_return_per_group`` (per agent) and ``groups`` (group -> agents).
    """
    unknown = [m for m in modes if m not in MODES]
    if unknown or not modes:
        raise ValueError(f"Unknown evaluation mode(s) {unknown}: choose from {list(MODES)}.")
    stored = checkpoint if isinstance(checkpoint, AlgorithmCheckpoint) else read_checkpoint(checkpoint)
    config = stored.config()
    if env is not None:
        config.environment(env)
    config.env_runners(num_envs_per_env_runner=1)
    states = stored.module_states()
    runner_class = config.env_runner_cls or (MultiAgentEnvRunner if config.is_multi_agent else SingleAgentEnvRunner)
    runner = runner_class(config=config)  # the fast path's EnvRunner for runs trained on it
    try:
        runner.module.set_state(states if config.is_multi_agent else states[sharing_module_id(config)])
        agent_ids = engine_module(runner, sharing_module_id(config)).agent_ids
        groups = agent_groups(runner, agent_ids)
        episodes_by_mode = {
            mode: runner.sample(num_episodes=episodes, explore=mode == "sampled", force_reset=True) for mode in modes
        }
    finally:
        runner.stop()
    return {mode: _report(mode, done, groups) for mode, done in episodes_by_mode.items()}


def _report(mode: str, done, groups: Dict[str, str]) -> Dict[str, Any]:
    episodes = agent_returns(done)
    totals = [sum(returns.values()) for returns in episodes]
    per_group: Dict[str, list] = defaultdict(list)
    for returns in episodes:
        for agent, value in returns.items():
            per_group[groups[agent]].append(value)
    members: Dict[str, list] = defaultdict(list)
    for agent, group in groups.items():
        members[group].append(agent)
    return {
        "mode": mode,
        "episodes": len(episodes),
        "mean_return": float(np.mean(totals)),
        "mean_return_per_group": {g: float(np.mean(v)) for g, v in sorted(per_group.items())},
        "groups": {g: members[g] for g in sorted(members)},
    }
