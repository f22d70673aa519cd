"""Test returns as the papers measure them: a fixed number of whole episodes on the evaluation
EnvRunners, greedy and sampled, every fixed number of env steps.

RLlib's own evaluation runs one exploration setting and reports a window of episodes. The
papers plot test returns; a run's score is then its test return at the end (and the area under
the test curve), not a window of training episodes. ``with_test_returns(config, ...)`` sets
RLlib's evaluation up with ``TestReturns`` as its evaluation function; each evaluation adds
``evaluation/test_returns/{greedy,sampled}_return_mean`` (the sum over agents per episode,
averaged over the episodes), ``.../episodes`` and ``.../env_steps`` (the env steps trained on
when tested) to the result.
"""

from __future__ import annotations

import math
from typing import Dict, List, Sequence

import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EVALUATION_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from ray.rllib.utils.metrics.metrics_logger import MetricsLogger

from rllib_adaps.rllib.fast_path import env_episode_returns

TEST_RETURNS_KEY = "test_returns"
MODES = ("greedy", "sampled")


def agent_returns(done) -> List[Dict[str, float]]:
    """Per finished env episode, each agent's return (multi-agent episodes or fast-path slots)."""
    if done and not hasattr(done[0], "agent_episodes"):
        return env_episode_returns(done)
    return [{agent: float(sa.get_return()) for agent, sa in ep.agent_episodes.items()} for ep in done]


def _episode_totals(env_runner, num_episodes: int, explore: bool) -> List[float]:
    done = env_runner.sample(num_episodes=num_episodes, explore=explore, force_reset=True)
    return [sum(returns.values()) for returns in agent_returns(done)]


class TestReturns:
    """RLlib ``custom_evaluation_function``: ``episodes`` env episodes per mode (``MODES``),
    split over the evaluation EnvRunners (the local one when there are none), each from a fresh
    reset so that no episode is cut by the previous evaluation."""

    __test__ = False  # not a pytest class

    def __init__(self, episodes: int = 20, modes: Sequence[str] = MODES):
        if int(episodes) < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}.")
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ValueError(f"Unknown test-return mode(s) {unknown}: choose from {list(MODES)}.")
        self.episodes, self.modes = int(episodes), tuple(modes)

    def __call__(self, algorithm, eval_group):
        remote = eval_group.num_healthy_remote_workers() if eval_group is not None else 0
        per_runner = math.ceil(self.episodes / max(remote, 1))
        # Logged as an EnvRunner's metrics are: RLlib reads evaluation results back as
        # aggregated stats (and ignores what this function returns).
        metrics = MetricsLogger()
        for mode in self.modes:
            explore = mode == "sampled"
            if eval_group is None:
                parts = [_episode_totals(algorithm.env_runner, self.episodes, explore)]
            else:
                parts = eval_group.foreach_env_runner(
                    lambda runner, n=per_runner, e=explore: _episode_totals(runner, n, e), local_env_runner=remote == 0)
            totals = [t for part in parts for t in part][: self.episodes]
            metrics.log_value((TEST_RETURNS_KEY, f"{mode}_return_mean"), float(np.mean(totals)), window=1)
            metrics.log_value((TEST_RETURNS_KEY, "episodes"), len(totals), window=1)
        # The env steps trained on when tested: a result between two tests repeats the last one.
        trained = algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0)
        metrics.log_value((TEST_RETURNS_KEY, "env_steps"), int(trained), window=1)
        algorithm.metrics.aggregate([metrics.reduce()], key=EVALUATION_RESULTS)
        return {}, 0, 0


def with_test_returns(config: AlgorithmConfig, *, every_iterations: int, episodes: int = 20,
                      modes: Sequence[str] = MODES, num_env_runners: int = 0) -> AlgorithmConfig:
    """A copy of ``config`` that measures test returns every ``every_iterations`` ``train()``
    calls (for a budget in env steps: env steps between tests / env steps per iteration), on
    ``num_env_runners`` evaluation EnvRunners (0: one local evaluation EnvRunner)."""
    if int(every_iterations) < 1:
        raise ValueError(f"every_iterations must be >= 1, got {every_iterations!r}.")
    return config.copy(copy_frozen=False).evaluation(
        evaluation_interval=int(every_iterations),
        evaluation_num_env_runners=int(num_env_runners),
        custom_evaluation_function=TestReturns(episodes, modes),
    )
