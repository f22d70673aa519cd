"""Fast path against the multi-agent path: whole-iteration env steps/s, side by side.

    python bench/fast_path_speed.py --rounds 3 > docs/results/fast_path_speed.txt
    python bench/fast_path_speed.py --env-only          # the vector envs alone, and SuperSuit's

Per scenario (BPS v2: 30 agents; LBF: 6 agents; C-RWARE tiny-4ag: 4 agents), FuPS with PPO on
8 env copies, one epoch, sampled by the driver's EnvRunner (``num_env_runners=0``: no Ray
scheduling between processes, so the two paths are timed on the same cores in the same
process). Both paths are built once; after one warm-up iteration each they take turns, one
iteration each per round. Reported per path (medians over rounds):

- env steps/s of whole iterations (sampling + learner update), and the ratio fast / multi-agent;
- time per agent step (iteration time / (env steps x agents)), split into the env (the vector
  env's ``step``/``reset`` as RLlib calls them), the module (``forward_exploration`` on the
  EnvRunner), RLlib's bookkeeping (the rest of ``EnvRunner.sample()``: episodes, connectors,
  callbacks, metrics) and the learner (the rest of the iteration).

``--env-only``: random valid actions on the vector envs alone (no RLlib): the fast path's
``SlotVectorEnv``, SuperSuit's ``pettingzoo_env_to_vec_env_v1`` + ``concat_vec_envs_v1`` (the
alternative considered; no agent index, same-step autoreset; wrapped in SuperSuit's
``pad_observations_v0`` where agents' observation spaces differ, as it requires one space),
and the ParallelEnv copies stepped in a plain loop, in us per agent step.
"""

from __future__ import annotations

import argparse
import statistics
import time
from collections import defaultdict

import numpy as np

SCENARIOS = {
    "bps_v2": ("bps", {"preset": "v2"}, 2000, 500),
    "lbf": ("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50}, 2000, 500),
    "crware": ("crware", {"task": "tiny-4ag", "max_steps": 500}, 4000, 1000),
}
COPIES = 8


class Timers:
    """Wraps the local EnvRunner's vector env, module and sample() with accumulating timers."""

    def __init__(self, runner):
        self.totals = defaultdict(float)
        env, module = runner.env, runner.module
        for name, owner, attr in (("env", env, "step"), ("env", env, "reset"),
                                  ("module", module, "forward_exploration"), ("sample", runner, "sample")):
            setattr(owner, attr, self._timed(name, getattr(owner, attr)))

    def _timed(self, name, fn):
        def timed(*args, **kwargs):
            start = time.perf_counter()
            try:
                return fn(*args, **kwargs)
            finally:
                self.totals[name] += time.perf_counter() - start

        return timed

    def take(self) -> dict:
        out, self.totals = dict(self.totals), defaultdict(float)
        return out


def build(name: str, env_config: dict, batch: int, minibatch: int, fast: bool):
    from ray.rllib.algorithms.ppo import PPOConfig

    import rllib_adaps

    config = (
        PPOConfig()
        .environment(name, env_config=env_config)
        .env_runners(num_env_runners=0, num_envs_per_env_runner=COPIES)
        .training(train_batch_size_per_learner=batch, minibatch_size=minibatch, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=0)
    )
    config = rllib_adaps.configure_sharing(config, "fups", fast_path=fast)
    algo = config.build_algo()
    agents = len(config.rl_module_spec.model_config["agent_ids"])
    return algo, agents


def run_scenario(key: str, rounds: int) -> None:
    name, env_config, batch, minibatch = SCENARIOS[key]
    paths = {}
    for fast in (True, False):
        algo, agents = build(name, env_config, batch, minibatch, fast)
        algo.train()  # warm-up
        paths[fast] = {"algo": algo, "timers": Timers(algo.env_runner), "rows": []}
    for _ in range(rounds):
        for fast, p in paths.items():
            algo = p["algo"]
            p["timers"].take()
            before = algo.metrics.peek(("env_runners", "num_env_steps_sampled_lifetime"), default=0)
            start = time.perf_counter()
            result = algo.train()
            seconds = time.perf_counter() - start
            steps = result["env_runners"]["num_env_steps_sampled_lifetime"] - before
            t = p["timers"].take()
            per = 1e6 / (steps * agents)
            p["rows"].append({
                "env_steps_per_s": steps / seconds,
                "total": seconds * per,
                "env": t.get("env", 0.0) * per,
                "module": t.get("module", 0.0) * per,
                "bookkeeping": (t.get("sample", 0.0) - t.get("env", 0.0) - t.get("module", 0.0)) * per,
                "learner": (seconds - t.get("sample", 0.0)) * per,
                "return": result["env_runners"].get("episode_return_mean", float("nan")),
            })
    for p in paths.values():
        p["algo"].stop()

    med = {fast: {k: statistics.median(r[k] for r in p["rows"]) for k in p["rows"][0]} for fast, p in paths.items()}
    print(f"\n{key}: {name} {env_config}, {agents} agents, {COPIES} env copies, batch {batch} env steps, minibatch "
          f"{minibatch} rows, 1 epoch; {rounds} rounds, medians")
    print(f"{'path':12} {'env steps/s':>12} {'us/agent step':>14} {'env':>8} {'module':>8} {'RLlib':>8} {'learner':>8}   "
          f"{'share env/module/RLlib of sampling':>36}")
    for fast in (True, False):
        m = med[fast]
        sampling = m["env"] + m["module"] + m["bookkeeping"]
        shares = "/".join(f"{100 * m[k] / sampling:.0f}%" for k in ("env", "module", "bookkeeping"))
        print(f"{'fast' if fast else 'multi-agent':12} {m['env_steps_per_s']:12.0f} {m['total']:14.1f} {m['env']:8.1f} "
              f"{m['module']:8.1f} {m['bookkeeping']:8.1f} {m['learner']:8.1f}   {shares:>36}")
    ratios = [a["env_steps_per_s"] / b["env_steps_per_s"] for a, b in zip(paths[True]["rows"], paths[False]["rows"])]
    print(f"fast / multi-agent env steps/s: {med[True]['env_steps_per_s'] / med[False]['env_steps_per_s']:.2f}x "
          f"(per round: {', '.join(f'{r:.2f}' for r in ratios)})")


def env_only(steps: int) -> None:
    import supersuit

    from rllib_adaps.envs import make_parallel_env
    from rllib_adaps.rllib.fast_path import SlotVectorEnv

    print(f"vector envs alone, {COPIES} copies, random valid actions, {steps} vector steps; us per agent step (median of 3)")
    print(f"{'scenario':10} {'SlotVectorEnv':>14} {'SuperSuit':>10} {'ParallelEnv loop':>17}")
    for key, (name, env_config, _, _) in SCENARIOS.items():
        results = {}
        for kind in ("slots", "supersuit", "loop"):
            times = []
            for _ in range(3):
                envs = [make_parallel_env(name, env_config) for _ in range(COPIES)]
                agents = list(envs[0].possible_agents)
                n = len(agents)
                rng = np.random.default_rng(0)
                sizes = np.tile([envs[0].action_space(a).n for a in agents], COPIES)
                actions = (rng.random((steps, COPIES * n)) * sizes).astype(np.int64)
                if kind == "slots":
                    vec = SlotVectorEnv(envs)
                    vec.reset(seed=0)
                    step = vec.step
                elif kind == "supersuit":
                    par_env = envs[0]
                    if not hasattr(par_env, "render_mode"):
                        par_env.render_mode = None  # SuperSuit reads it
                    if any(par_env.observation_space(a) != par_env.observation_space(agents[0]) for a in agents):
                        par_env = supersuit.pad_observations_v0(par_env)  # one space for all agents, as it requires
                    if len(set(sizes)) > 1:
                        par_env = supersuit.pad_action_space_v0(par_env)
                    vec = supersuit.concat_vec_envs_v1(supersuit.pettingzoo_env_to_vec_env_v1(par_env), COPIES, num_cpus=0,
                                                       base_class="gymnasium")
                    vec.reset(seed=0)
                    step = vec.step
                else:
                    for c, env in enumerate(envs):
                        env.reset(seed=c)

                    def step(a, envs=envs, agents=agents, n=n):
                        for c, env in enumerate(envs):
                            env.step(dict(zip(agents, a[c * n:(c + 1) * n])))
                            if not env.agents:
                                env.reset()
                start = time.perf_counter()
                for t in range(steps):
                    step(actions[t])
                times.append((time.perf_counter() - start) / (steps * COPIES * n) * 1e6)
            results[kind] = statistics.median(times)
        print(f"{key:10} {results['slots']:14.2f} {results['supersuit']:10.2f} {results['loop']:17.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--scenarios", default=",".join(SCENARIOS))
    parser.add_argument("--env-only", action="store_true", help="time the vector envs alone (no RLlib)")
    parser.add_argument("--env-steps", type=int, default=2000, help="vector steps per env-only measurement")
    args = parser.parse_args()
    if args.env_only:
        env_only(args.env_steps)
        return

    import ray

    import rllib_adaps

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    print("PPO FuPS, fast path vs multi-agent path, taking turns in one process (driver EnvRunner, local Learner)")
    for key in args.scenarios.split(","):
        run_scenario(key, args.rounds)


if __name__ == "__main__":
    main()
