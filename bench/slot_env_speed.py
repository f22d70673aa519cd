"""The fast path's env, per agent step: SlotVectorEnv on a BatchedEnv vs on per-copy ParallelEnvs.

    python bench/slot_env_speed.py > docs/results/batched_envs_slots.txt

What the fast path's EnvRunner steps (observations with the agent index column, next-step
autoreset), with random valid actions: this package's envs stepping all copies in one array
call (the default) against the same envs stepped copy by copy (``ParallelEnvCopies``, the route
third-party envs take), and against the upstream-based LBF and C-RWARE
(``implementation="upstream"``) copy by copy. Env only, no policy.
"""

from __future__ import annotations

import time

from rllib_adaps.envs import make_parallel_env
from rllib_adaps.rllib.fast_path import ParallelEnvCopies, SlotVectorEnv

SCENARIOS = {
    "bps v1 (15 agents)": ("bps", {"preset": "v1"}),
    "bps v2 (30 agents)": ("bps", {"preset": "v2"}),
    "lbf 8x8 6p 3f": ("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3}),
    "lbf 15x15 10p 5f": ("lbf", {"players": 10, "grid_size": 15, "foods": 5}),
    "crware tiny-4ag": ("crware", {"task": "tiny-4ag"}),
    "crware small-8ag": ("crware", {"task": "small-8ag"}),
    "crware medium-16ag": ("crware", {"task": "medium-16ag"}),
}


def us_per_agent_step(vector_env: SlotVectorEnv, seconds: float) -> float:
    vector_env.reset(seed=0)
    actions = [vector_env.action_space.sample() for _ in range(64)]
    steps, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        for action in actions:
            vector_env.step(action)
        steps += len(actions)
    return (time.perf_counter() - start) / (steps * vector_env.num_envs) * 1e6


def main(seconds: float = 1.5) -> None:
    print(f"# python bench/slot_env_speed.py   (us per agent step; {seconds} s per cell)")
    print(f"{'scenario':20} {'copies':>6} {'batched':>8} {'per copy':>9} {'upstream':>9} {'per copy / batched':>19}")
    for name, (env, config) in SCENARIOS.items():
        for copies in (8, 64):
            batched = SlotVectorEnv(make_parallel_env(env, config).make_batched(copies))
            per_copy = SlotVectorEnv(ParallelEnvCopies([make_parallel_env(env, config) for _ in range(copies)]))
            ours, loop = us_per_agent_step(batched, seconds), us_per_agent_step(per_copy, seconds)
            upstream = float("nan")
            if env != "bps":
                upstream_env = SlotVectorEnv([make_parallel_env(env, {**config, "implementation": "upstream"})
                                              for _ in range(copies)])
                upstream = us_per_agent_step(upstream_env, seconds)
            print(f"{name:20} {copies:>6} {ours:>8.2f} {loop:>9.2f} {upstream:>9.1f} {loop / ours:>18.1f}x", flush=True)


if __name__ == "__main__":
    main()
