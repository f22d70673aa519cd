"""C-RWARE env speed: microseconds per agent step, numpy batch vs the upstream (rware) env.

Random uniform actions, env only (no policy), resets included (default 500-step episodes, so
a run covers several of them). The numpy batch steps ``C`` copies per call; upstream steps
``C`` separate ``UpstreamColouredWarehouse`` envs in a Python loop. Usage::

    python bench/crware_speed_check.py [--steps 2000] [--copies 8 64] [--tasks tiny-4ag ...]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rllib_adaps.envs.coloured_rware import ColouredWarehouse
from rllib_adaps.envs.coloured_rware_upstream import UpstreamColouredWarehouse


def numpy_us_per_agent_step(task: str, copies: int, steps: int, max_steps: int) -> tuple[float, int]:
    batch = ColouredWarehouse(task, max_steps=max_steps).make_batched(copies)
    every = np.arange(copies)
    batch.reset_copies(every, list(range(copies)))
    active = np.ones(copies, dtype=bool)
    rng = np.random.default_rng(0)
    actions = rng.integers(5, size=(steps, copies, batch.num_agents))
    start = time.perf_counter()
    for t in range(steps):
        _, _, truncated = batch.step_copies(actions[t], active)
        batch.observations()
        if truncated.any():
            ended = np.flatnonzero(truncated)
            batch.reset_copies(ended, [None] * len(ended))
            batch.observations()
    elapsed = time.perf_counter() - start
    return 1e6 * elapsed / (steps * copies * batch.num_agents), batch.tie_fallbacks


def upstream_us_per_agent_step(task: str, copies: int, steps: int, max_steps: int) -> float:
    envs = [UpstreamColouredWarehouse(task, max_steps=max_steps) for _ in range(copies)]
    for seed, env in enumerate(envs):
        env.reset(seed=seed)
    agents = envs[0].possible_agents
    rng = np.random.default_rng(0)
    actions = rng.integers(5, size=(steps, copies, len(agents)))
    start = time.perf_counter()
    for t in range(steps):
        for c, env in enumerate(envs):
            *_, truncations, _ = env.step(dict(zip(agents, actions[t, c].tolist())))
            if truncations[agents[0]]:
                env.reset()
    elapsed = time.perf_counter() - start
    return 1e6 * elapsed / (steps * copies * len(agents))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000, help="batch steps per numpy measurement")
    parser.add_argument("--upstream-steps", type=int, default=150, help="steps per upstream measurement")
    parser.add_argument("--max-steps", type=int, default=500)
    parser.add_argument("--copies", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--tasks", nargs="+", default=["tiny-4ag", "small-8ag", "medium-16ag"])
    parser.add_argument("--no-upstream", action="store_true")
    args = parser.parse_args()
    print(f"{'task':<14}{'copies':>7}{'numpy us/agent-step':>22}{'upstream':>11}{'speed-up':>10}{'tie steps':>11}")
    for task in args.tasks:
        for copies in args.copies:
            ours, ties = numpy_us_per_agent_step(task, copies, args.steps, args.max_steps)
            if args.no_upstream:
                print(f"{task:<14}{copies:>7}{ours:>22.2f}{'-':>11}{'-':>10}{ties:>11}")
                continue
            theirs = upstream_us_per_agent_step(task, copies, args.upstream_steps, args.max_steps)
            print(f"{task:<14}{copies:>7}{ours:>22.2f}{theirs:>11.1f}{theirs / ours:>9.0f}x{ties:>11}")


if __name__ == "__main__":
    main()
