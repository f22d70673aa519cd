"""FuPS+id: cost of telling agents apart, SuperSuit's agent indicator vs this package's way.

This package appends the agent index with one env-to-module connector (all methods need it)
and builds the one-hot inside the module's forward pass. SuperSuit's ``agent_indicator_v0``
appends the one-hot in the env, but wraps a ParallelEnv by converting it to AEC and back.
Measured side by side: random-action env steps/s of the raw env, the env plus our connector's
per-step work, and the SuperSuit-wrapped env.

    python bench/agent_indicator.py --preset v2 --steps 5000
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import supersuit

from rllib_adaps.rllib.connectors import AgentIndexObservations
from rllib_adaps.envs import make_parallel_env


def rate(env, steps: int, per_step=None, repeats: int = 3) -> float:
    rng = np.random.default_rng(0)
    agents = env.possible_agents
    best = 0.0
    for _ in range(repeats):
        obs, _ = env.reset(seed=0)
        actions = rng.integers(0, 5, size=(steps, len(agents)))
        start = time.perf_counter()
        for row in actions:
            obs, _, term, trunc, _ = env.step(dict(zip(agents, row.tolist())))
            if per_step is not None:
                per_step(obs)
            if any(term.values()) or any(trunc.values()):
                obs, _ = env.reset()
        best = max(best, steps / (time.perf_counter() - start))
    return best


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="v2")
    parser.add_argument("--steps", type=int, default=5000)
    args = parser.parse_args()
    config = {"preset": args.preset}
    raw_env = make_parallel_env("bps", config)
    agents = raw_env.possible_agents
    space = raw_env.observation_space(agents[0])
    connector = AgentIndexObservations(agent_ids=agents, obs_dim=space.shape[0])
    connector.recompute_output_observation_space(__import__("gymnasium").spaces.Dict({a: space for a in agents}), None)

    raw = rate(raw_env, args.steps)
    ours = rate(make_parallel_env("bps", config), args.steps, per_step=lambda obs: connector.preprocess(obs, None))
    wrapped = supersuit.agent_indicator_v0(make_parallel_env("bps", config), type_only=False)
    supersuit_rate = rate(wrapped, args.steps)
    print(f"BPS {args.preset} ({len(agents)} agents), random actions, best of 3 x {args.steps} steps")
    print(f"{'variant':<42} {'steps/s':>10} {'x raw':>7}")
    for name, value in (("raw env", raw), ("env + AgentIndexObservations (ours)", ours), ("supersuit.agent_indicator_v0(env)", supersuit_rate)):
        print(f"{name:<42} {value:>10,.0f} {value / raw:>7.2f}")


if __name__ == "__main__":
    main()
