"""How well identity pre-training recovers the true agent types, offline, per scenario.

    python bench/identity_recovery.py --reference      # the table -> docs/results/identity_recovery.txt
    python bench/identity_recovery.py --criteria       # K criteria compared -> docs/results/identity_recovery_k_criteria.txt

Samples uniformly random transitions from each env (what the initial shared policy collects
at the start of a run, the default timeline), zero-pads observations to the largest agent's
size as the training pipeline does, and fits ``fit_identities`` with its defaults: K chosen
automatically. Reports the adjusted Rand index (ARI) of the clusters against the env's
``true_agent_types``, mean over seeds, and the K chosen per seed. ``--env-steps`` is the
number of env steps collected (the callback's ``identity_env_steps``); every agent acts in
every step. Scenarios: LBF in several agent-index layouts (which index holds which level) and
with levels hidden (types differ only in reward), BPS v1-v6 with the agents' order shuffled,
C-RWARE, ``roles``, and two mpe2 envs (``pip install mpe2``; types are the role names).
``--reference`` also fits with the SePS reference code's identity input (the decoder reads the
observation as it is: ``identity_leaks="read"``, no change profile, no declared own features),
so the effect of our choices shows. Single-threaded torch, no Ray; not CI.

``--criteria`` also scores every K criterion of ``bench/k_criteria.py``
on the same identity vectors, and the ARI with the true K given, which bounds what any
criterion can reach; it writes both tables.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
import torch
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.envs import make_parallel_env
from k_criteria import K_CRITERIA  # noqa: E402 (bench/ is on sys.path when run as a script)
from rllib_adaps.core.clustering import cluster_identities
from rllib_adaps.core.identity import VAEOptions, fit_identities

LBF = {"grid_size": 8, "foods": 3, "max_steps": 50}
#: name -> (env, env_config, shuffle the agents' order). LBF layouts: which index holds which
#: level (LBF shows each agent the others' levels in index order); "random*" are permutations.
SCENARIOS = {
    "lbf_112233": ("lbf", {**LBF, "levels": [1, 1, 2, 2, 3, 3]}, False),
    "lbf_121233": ("lbf", {**LBF, "levels": [1, 2, 1, 2, 3, 3]}, False),
    "lbf_123123": ("lbf", {**LBF, "levels": [1, 2, 3, 1, 2, 3]}, False),
    "lbf_random1": ("lbf", {**LBF, "levels": [3, 1, 2, 1, 3, 2]}, False),
    "lbf_random2": ("lbf", {**LBF, "levels": [2, 3, 1, 1, 2, 3]}, False),
    "lbf_hidden": ("lbf", {**LBF, "levels": [1, 2, 3, 1, 2, 3], "observe_agent_levels": False}, False),
    **{f"bps_{v}_shuffled": ("bps", {"preset": v}, True) for v in ("v1", "v2", "v3", "v4", "v5", "v6")},
    "crware_tiny4": ("crware", {"task": "tiny-4ag", "max_steps": 500}, False),
    "crware_small8": ("crware", {"task": "small-8ag", "max_steps": 500}, False),
    "roles": ("roles", {}, False),
    "mpe2_world_comm": ("mpe2:simple_world_comm_v3", {}, False),
    "mpe2_tag": ("mpe2:simple_tag_v3", {}, False),
}


def make_env(env_name: str, env_config: dict):
    """This package's env, or an mpe2 env (``mpe2:<module>``, types = role name prefixes)."""
    if not env_name.startswith("mpe2:"):
        return make_parallel_env(env_name, env_config)
    import importlib

    env = importlib.import_module(f"mpe2.{env_name.split(':')[1]}").parallel_env(max_cycles=25, **env_config)
    roles = [agent.rsplit("_", 1)[0] for agent in env.possible_agents]
    env.true_agent_types = {a: sorted(set(roles)).index(r) for a, r in zip(env.possible_agents, roles)}
    return env


RESULTS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "docs", "results")


def random_transitions(env_name: str, env_config: dict, env_steps: int, seed: int) -> dict:
    """``env_steps`` steps of uniformly random actions; observations zero-padded on the right."""
    env = make_env(env_name, env_config)
    agents = list(env.possible_agents)
    obs_sizes = np.array([int(np.prod(env.observation_space(a).shape)) for a in agents])
    action_sizes = np.array([env.action_space(a).n for a in agents])
    width = int(obs_sizes.max())
    rng = np.random.default_rng(seed)

    def padded(observations: dict, live: list) -> np.ndarray:
        rows = np.zeros((len(live), width), dtype=np.float32)
        for row, a in enumerate(live):
            flat = np.asarray(observations[a], dtype=np.float32).ravel()
            rows[row, : len(flat)] = flat
        return rows

    obs, _ = env.reset(seed=seed)
    parts = {k: [] for k in ("agent_index", "obs", "actions", "next_obs", "rewards")}
    for _ in range(env_steps):
        live = list(env.agents)
        index = np.array([agents.index(a) for a in live])
        chosen = (rng.random(len(live)) * action_sizes[index]).astype(np.int64)
        next_obs, rewards, terminated, truncated, _ = env.step(dict(zip(live, chosen.tolist())))
        parts["agent_index"].append(index)
        parts["obs"].append(padded(obs, live))
        parts["actions"].append(chosen)
        parts["next_obs"].append(padded(next_obs, live))
        parts["rewards"].append(np.array([rewards[a] for a in live], dtype=np.float32))
        obs = next_obs
        if not env.agents or all(terminated.values()) or all(truncated.values()):
            obs, _ = env.reset()
    data = {k: np.concatenate(v) for k, v in parts.items()}
    data.update(obs_sizes=obs_sizes, action_sizes=action_sizes, num_actions=int(action_sizes.max()))
    data["types"] = np.array([env.true_agent_types[a] for a in agents])
    data["own_features"] = getattr(env, "own_observation_features", None)
    return data


def shuffle_agents(data: dict, seed: int) -> dict:
    """The same transitions as if the env had listed its agents in a random order."""
    order = np.random.default_rng(1000 + seed).permutation(len(data["types"]))  # new index of each agent
    inverse = np.argsort(order)
    shuffled = dict(data, agent_index=order[data["agent_index"]])
    for key in ("types", "obs_sizes", "action_sizes"):
        shuffled[key] = data[key][inverse]
    return shuffled


def fit(data: dict, seed: int, **kwargs):
    n = len(data["types"])
    spaces = {}
    if len(set(data["obs_sizes"].tolist())) > 1:
        spaces["obs_sizes"] = data["obs_sizes"]
    if len(set(data["action_sizes"].tolist())) > 1:
        spaces["action_sizes"] = data["action_sizes"]
    return fit_identities(data["agent_index"], data["obs"], data["actions"], data["next_obs"], data["rewards"],
                          num_agents=n, num_actions=data["num_actions"], seed=seed, own_features=data.get("own_features"),
                          **spaces, **kwargs)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--env-steps", type=int, default=3000, help="the default identity_env_steps")
    parser.add_argument("--reference", action="store_true", help="also fit with the reference code's identity input")
    parser.add_argument("--seeds", default="0,1,2,3,4")
    parser.add_argument("--criteria", action="store_true", help="compare the K criteria on the same identities")
    parser.add_argument("--out", default=None, help="file to write the table to (default: docs/results/...)")
    args = parser.parse_args()
    torch.set_num_threads(1)
    seeds = [int(s) for s in args.seeds.split(",")]
    out_path = args.out or os.path.join(RESULTS, "identity_recovery.txt")
    lines = [f"# python bench/identity_recovery.py {' '.join(sys.argv[1:])}".rstrip(),
             f"# uniformly random transitions, {args.env_steps} env steps per fit, seeds {seeds}, single-threaded torch"]

    def emit(line: str) -> None:
        print(line, flush=True)
        lines.append(line)

    for line in lines:
        print(line)
    criteria_lines = list(lines)
    header = ["true K"] + list(K_CRITERIA)
    criteria_lines.append(f"{'scenario':14s} " + " ".join(f"{h:>22s}" for h in header))
    criteria_lines.append(f"{'':14s} " + " ".join(f"{'ARI  (K per seed)':>22s}" for _ in header))
    emit(f"{'scenario':17s} {'agents':>6s} {'true K':>6s} {'mean ARI':>8s}  {'ARI per seed':28s} {'K per seed':16s} {'s/fit':>5s}"
         f"  {'read: mean ARI':>14s} {'K per seed':16s}")
    means = {}
    for name in args.scenarios.split(","):
        env_name, env_config, shuffle = SCENARIOS[name]
        aris: dict[str, list] = {}
        ks: dict[str, list] = {}
        seconds = []
        true_k = None
        for seed in seeds:
            data = random_transitions(env_name, env_config, args.env_steps, seed)
            if shuffle:
                data = shuffle_agents(data, seed)
            types = data["types"]
            true_k = len(set(types.tolist()))
            start = time.perf_counter()
            result = fit(data, seed)
            seconds.append(time.perf_counter() - start)
            aris.setdefault("default", []).append(adjusted_rand_score(types, result.labels))
            ks.setdefault("default", []).append(result.num_clusters)
            if args.reference:  # the reference code's identity input: the decoder reads the observation as it is
                reference = fit(dict(data, own_features=None), seed, vae=VAEOptions(identity_leaks="read"), change_profile=False)
                aris.setdefault("read", []).append(adjusted_rand_score(types, reference.labels))
                ks.setdefault("read", []).append(reference.num_clusters)
            if args.criteria:
                groups = result.space_groups
                labels = cluster_identities(result.identities, true_k, seed, groups=groups).labels
                aris.setdefault("true K", []).append(adjusted_rand_score(types, labels))
                ks.setdefault("true K", []).append(true_k)
                for criterion, select in K_CRITERIA.items():
                    clustering = cluster_identities(result.identities, None, seed, groups=groups, select=select)
                    aris.setdefault(criterion, []).append(adjusted_rand_score(types, clustering.labels))
                    ks.setdefault(criterion, []).append(clustering.num_clusters)
        per_seed = " ".join(f"{a:.2f}" for a in aris["default"])
        read = f"{np.mean(aris['read']):14.2f} {','.join(map(str, ks['read'])):16s}" if args.reference else ""
        emit(f"{name:17s} {len(types):6d} {true_k:6d} {np.mean(aris['default']):8.2f}  {per_seed:28s} "
             f"{','.join(map(str, ks['default'])):16s} {np.mean(seconds):5.1f}  {read}".rstrip())
        if args.criteria:
            cells = [f"{np.mean(aris[c]):5.2f} ({','.join(map(str, ks[c]))})" for c in ["true K", *K_CRITERIA]]
            criteria_lines.append(f"{name:14s} " + " ".join(f"{c:>22s}" for c in cells))
            print(criteria_lines[-1], flush=True)
            means[name] = {c: float(np.mean(aris[c])) for c in ["true K", *K_CRITERIA]}
    with open(out_path, "w") as f:
        f.write("\n".join(lines) + "\n")
    print(f"written to {out_path}")
    if args.criteria:
        criteria_lines.append(f"{'mean':14s} " + " ".join(
            f"{np.mean([m[c] for m in means.values()]):>22.2f}" for c in ["true K", *K_CRITERIA]))
        path = os.path.join(os.path.dirname(out_path), "identity_recovery_k_criteria.txt")
        with open(path, "w") as f:
            f.write("\n".join(criteria_lines) + "\n")
        print(f"written to {path}")


if __name__ == "__main__":
    main()
