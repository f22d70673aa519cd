"""LBF env speed: microseconds per agent step, numpy batch vs the upstream engine.

Env only: random valid actions (drawn up front), every copy reset when its episode ends
(resets counted in the time), observations built every step. The upstream side is a Python
loop over ``UpstreamLevelForaging.step`` of one env per copy.

    python bench/lbf_speed_check.py [--steps 300] [--copies 8 64]
"""

from __future__ import annotations

import argparse
import time

import numpy as np

from rllib_adaps.envs.lbf import PersistentLevelForaging
from rllib_adaps.envs.lbf_upstream import UpstreamLevelForaging

CONFIGS = {
    "8x8 6p 3f": {"grid_size": 8, "levels": [1, 1, 2, 2, 3, 3], "foods": 3},
    "10x10 8p 4f": {"grid_size": 10, "levels": [1, 1, 2, 2, 3, 3, 4, 4], "foods": 4},
    "15x15 10p 5f": {"grid_size": 15, "players": 10, "foods": 5},
    "15x15 10p 5f sight 2": {"grid_size": 15, "players": 10, "foods": 5, "sight": 2},
}


def numpy_us_per_agent_step(env_config: dict, copies: int, steps: int, seed: int = 0) -> float:
    batch = PersistentLevelForaging.from_config(env_config).make_batched(copies)
    num_agents = len(batch.possible_agents)
    actions = np.random.default_rng(seed).integers(0, 6, size=(steps, copies, num_agents))
    active = np.ones(copies, dtype=bool)
    batch.reset_copies(np.arange(copies), [seed + c for c in range(copies)])
    batch.observations()
    start = time.perf_counter()
    for step in range(steps):
        _, terminated, truncated = batch.step_copies(actions[step], active)
        ended = np.flatnonzero(terminated | truncated)
        if ended.size:
            batch.reset_copies(ended, [None] * ended.size)
        batch.observations()
    elapsed = time.perf_counter() - start
    return elapsed / (steps * copies * num_agents) * 1e6


def upstream_us_per_agent_step(env_config: dict, copies: int, steps: int, seed: int = 0) -> float:
    envs = [UpstreamLevelForaging.from_config(env_config) for _ in range(copies)]
    agents = envs[0].possible_agents
    actions = np.random.default_rng(seed).integers(0, 6, size=(steps, copies, len(agents))).tolist()
    for c, env in enumerate(envs):
        env.reset(seed=seed + c)
    start = time.perf_counter()
    for step in range(steps):
        for c, env in enumerate(envs):
            _, _, terminated, truncated, _ = env.step(dict(zip(agents, actions[step][c])))
            if terminated[agents[0]] or truncated[agents[0]]:
                env.reset()
    elapsed = time.perf_counter() - start
    return elapsed / (steps * copies * len(agents)) * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=300, help="steps per measurement (numpy)")
    parser.add_argument("--upstream-steps", type=int, default=60, help="steps per measurement (upstream)")
    parser.add_argument("--copies", type=int, nargs="+", default=[8, 64])
    parser.add_argument("--target-us", type=float, default=5.0)
    args = parser.parse_args()
    print(f"{'config':<22} {'copies':>6} {'numpy us':>9} {'upstream us':>12} {'speed-up':>9}  target <= {args.target_us:g} us")
    all_ok = True
    for name, env_config in CONFIGS.items():
        for copies in args.copies:
            ours = min(numpy_us_per_agent_step(env_config, copies, args.steps, seed) for seed in (0, 1))
            theirs = upstream_us_per_agent_step(env_config, copies, args.upstream_steps)
            ok = ours <= args.target_us
            all_ok &= ok
            print(f"{name:<22} {copies:>6} {ours:>9.2f} {theirs:>12.1f} {theirs / ours:>8.0f}x  {'ok' if ok else 'SLOW'}")
    raise SystemExit(0 if all_ok else 1)


if __name__ == "__main__":
    main()
