"""Test returns as the papers measure them: a fixed number of whole episodes on the evaluation
EnvRunners, greedy and sampled, every fixed number of env steps.

RLlib's own evaluation runs one exploration setting and reports a window of episodes. The
papers plot test returns; a run's score is then its test return at the end (and the area under
the test curve), not a window of training episodes. ``with_test_returns(config, ...)`` sets
RLlib's evaluation up with ``TestReturns`` as its evaluation function; each test adds
``evaluation/test_returns/{greedy,sampled}_return_mean`` (the sum over agents per episode,
averaged over the episodes), ``.../episodes`` and ``.../env_steps`` (the env steps trained on
when tested) to the result.
"""

from __future__ import annotations

import math
from typing import Dict, List, Optional, Sequence

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
    reset so that no episode is cut by the previous evaluation.

    RLlib calls it after every iteration; it tests in the first iteration, whenever the env
    steps trained on cross a multiple of ``every_env_steps``, and in the iteration that reaches
    ``end_env_steps`` (the budget), so the last test is at the end whatever the env steps per
    iteration. Other calls test nothing.
    """

    __test__ = False  # not a pytest class

    def __init__(self, episodes: int = 20, modes: Sequence[str] = MODES, *, every_env_steps: int,
                 end_env_steps: Optional[int] = None):
        if int(episodes) < 1:
            raise ValueError(f"episodes must be >= 1, got {episodes!r}.")
        unknown = [m for m in modes if m not in MODES]
        if unknown or not modes:
            raise ValueError(f"Unknown test-return mode(s) {unknown}: choose from {list(MODES)}.")
        if int(every_env_steps) < 1:
            raise ValueError(f"every_env_steps must be >= 1, got {every_env_steps!r}.")
        self.episodes, self.modes = int(episodes), tuple(modes)
        self.every_env_steps = int(every_env_steps)
        self.end_env_steps = None if end_env_steps is None else int(end_env_steps)
        self._last_block = -1  # the last multiple of every_env_steps tested (-1: none yet)
        self._tested_end = False

    def _due(self, trained: int) -> bool:
        block = trained // self.every_env_steps
        at_end = self.end_env_steps is not None and trained >= self.end_env_steps and not self._tested_end
        if block <= self._last_block and not at_end:
            return False
        self._last_block, self._tested_end = block, self._tested_end or at_end
        return True

    def __call__(self, algorithm, eval_group):
        trained = int(algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
        if not self._due(trained):
            return {}, 0, 0
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
        # The env steps trained on when tested: results between two tests repeat the last one
        # (or, later, report NaN), so readers key tests by this.
        metrics.log_value((TEST_RETURNS_KEY, "env_steps"), trained, window=1)
        algorithm.metrics.aggregate([metrics.reduce()], key=EVALUATION_RESULTS)
        return {}, 0, 0


def with_test_returns(config: AlgorithmConfig, *, every_env_steps: int, end_env_steps: Optional[int] = None,
                      episodes: int = 20, modes: Sequence[str] = MODES, num_env_runners: int = 0) -> AlgorithmConfig:
    """A copy of ``config`` that measures test returns (``TestReturns``) in the first iteration,
    every ``every_env_steps`` env steps trained on and at ``end_env_steps`` (the budget), on
    ``num_env_runners`` evaluation EnvRunners (0: one local evaluation EnvRunner)."""
    return config.copy(copy_frozen=False).evaluation(
        evaluation_interval=1,
        evaluation_num_env_runners=int(num_env_runners),
        custom_evaluation_function=TestReturns(episodes, modes, every_env_steps=every_env_steps, end_env_steps=end_env_steps),
    )
