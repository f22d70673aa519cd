"""How well identity pre-training recovers the true agent types, offline, per scenario.

    python bench/identity_recovery.py > docs/results/identity_recovery.txt

Samples random-policy transitions from each env (the same data the callback sees right after
the start of a run), fits the identity VAE + k-means with several settings, and prints the
adjusted Rand index (ARI) of the clusters against the env's ``true_agent_types``, with K chosen
by Davies-Bouldin and with K fixed to the true number of types. Single-threaded torch; not CI.

Settings compared (see ``rllib_adaps.identity.fit_identities``):
- ``both``: the decoder reconstructs the next observation and the reward (default);
- ``reward``: only the reward; ``next_obs``: only the next observation;
- ``both, drop constant``: both, and observation features that are constant within every agent
  and differ between agents (an agent's own LBF level) are left out of the VAE's data: with
  them the decoder can tell agents apart without the identity vector. This is the package's
  default (``drop_identity_leaks=True``).
"""

from __future__ import annotations

import argparse
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.envs import make_parallel_env
from rllib_adaps.identity import fit_identities

SCENARIOS = {
    "bps_v1": ("bps", {"preset": "v1"}),
    "bps_v2": ("bps", {"preset": "v2"}),
    "lbf": ("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50}),
    "crware_tiny4": ("crware", {"task": "tiny-4ag", "max_steps": 500}),
    "crware_small8": ("crware", {"task": "small-8ag", "max_steps": 500}),
}
SETTINGS = {
    "both": dict(reconstruct=("next_obs", "reward"), drop_identity_leaks=False),
    "reward": dict(reconstruct=("reward",), drop_identity_leaks=False),
    "next_obs": dict(reconstruct=("next_obs",), drop_identity_leaks=False),
    "both, drop constant": dict(reconstruct=("next_obs", "reward"), drop_identity_leaks=True),
}


def random_transitions(env_name: str, env_config: dict, env_steps: int, seed: int) -> dict:
    env = make_parallel_env(env_name, env_config)
    agents = list(env.possible_agents)
    rng = np.random.default_rng(seed)
    obs, _ = env.reset(seed=seed)
    parts = {k: [] for k in ("agent_index", "obs", "actions", "next_obs", "rewards")}
    for _ in range(env_steps):
        actions = {a: int(rng.integers(env.action_space(a).n)) for a in env.agents}
        next_obs, rewards, terminated, truncated, _ = env.step(actions)
        for a in actions:
            parts["agent_index"].append(agents.index(a))
            parts["obs"].append(np.asarray(obs[a], dtype=np.float32).ravel())
            parts["actions"].append(actions[a])
            parts["next_obs"].append(np.asarray(next_obs[a], dtype=np.float32).ravel())
            parts["rewards"].append(float(rewards[a]))
        obs = next_obs
        if not env.agents or all(terminated.values()) or all(truncated.values()):
            obs, _ = env.reset()
    data = {k: np.asarray(v) for k, v in parts.items()}
    data["num_actions"] = int(env.action_space(agents[0]).n)
    data["types"] = np.array([env.true_agent_types[a] for a in agents])
    return data


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--env-steps", default="2000,10000")
    parser.add_argument("--seeds", default="0,1")
    args = parser.parse_args()
    torch.set_num_threads(1)
    print(f"{'scenario':14s} {'env steps':>9s} {'setting':22s} {'seed':>4s}  K auto  ARI auto  ARI K=true  seconds")
    for name in args.scenarios.split(","):
        env_name, env_config = SCENARIOS[name]
        for steps in map(int, args.env_steps.split(",")):
            for seed in map(int, args.seeds.split(",")):
                data = random_transitions(env_name, env_config, steps, seed)
                types, n = data["types"], len(data["types"])
                for setting, kwargs in SETTINGS.items():
                    obs, next_obs = data["obs"], data["next_obs"]
                    common = dict(num_agents=n, num_actions=data["num_actions"], seed=seed, **kwargs)
                    start = time.perf_counter()
                    auto = fit_identities(data["agent_index"], obs, data["actions"], next_obs, data["rewards"], **common)
                    fixed = fit_identities(data["agent_index"], obs, data["actions"], next_obs, data["rewards"],
                                           num_clusters=len(set(types.tolist())), **common)
                    print(f"{name:14s} {steps:9d} {setting:22s} {seed:4d}  {auto.num_clusters:6d}  "
                          f"{adjusted_rand_score(types, auto.labels):8.2f}  {adjusted_rand_score(types, fixed.labels):10.2f}  "
                          f"{time.perf_counter() - start:7.1f}", flush=True)


if __name__ == "__main__":
    main()
