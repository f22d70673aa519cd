"""Speed of the sharing engine against full sharing and against plain RLlib, side by side.

    python bench/engine_speed.py --agents 120 --types 3 > docs/results/engine_speed.txt

Every configuration is built once in this process (local EnvRunner, local Learner: no Ray
scheduling noise), then the configurations take turns: each round, each runs ``--iters`` PPO
iteration(s) and its time per agent step is recorded. Ratios are medians over rounds of
FuPS time / method time in the same round (>= 1: as fast as FuPS or faster): pairing by
round cancels the machine's slow drifts, which on a shared 2-core machine are larger than
the differences measured. A second table times the module alone (no RLlib sampling).

- ``plain``: RLlib's own DefaultPPOTorchRLModule, one module shared by all agents, no plugin
  piece (no agent-index connector, no callback): the cost of the plugin itself.
  Every configuration runs on RLlib's multi-agent path (``fast_path=False``), as ``plain``
  does; the fast path's speed is ``bench/fast_path_speed.py``.
- ``fups``: the engine with one slice, no masks.
- ``nops``: one slice per agent (N slices, grouped matmuls).
- ``seps``: K slices, tables installed as after a fit (K = number of types).
- ``adaps``: one slice, K mask rows installed as after a fit.
"""

from __future__ import annotations

import argparse
import gc
import statistics
import time

import numpy as np


def build(method: str, agents: int, types: int, batch: int):
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec

    import rllib_adaps
    from rllib_adaps.core.identity import IdentityResult

    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [agents // types] * types})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=batch, minibatch_size=batch, num_epochs=1)
        .rl_module(model_config={"fcnet_hiddens": [64, 64]})
        .debugging(seed=0)
    )
    if method == "plain":
        config.multi_agent(policies={"p"}, policy_mapping_fn=lambda agent_id, episode, **kw: "p")
        config.rl_module(rl_module_spec=RLModuleSpec())
        return config.build_algo()
    options = {"shared_training_env_steps": 10**12, "num_clusters": types} if method in ("seps", "adaps") else {}
    algo = rllib_adaps.configure_sharing(config, method, fast_path=False, **options).build_algo()
    if options:  # install the true types' clustering directly: what a fit would install
        callback = next(c for c in algo.callbacks if isinstance(c, rllib_adaps.SharingCallback))
        labels = np.repeat(np.arange(types), agents // types)
        centres = np.random.default_rng(0).normal(size=(types, 10))
        fit = IdentityResult(identities=centres[labels], labels=labels, centres=centres, num_clusters=types)
        facts = callback._facts(algo)
        callback._install(algo, callback.method.plan_install(fit, facts["agent_slice"], facts["hidden_sizes"]))
    return algo


def module_step_times(algos, agents: int, rows: int, reps: int):
    """Module-only cost (no RLlib sampling around it), us per sample, interleaved across methods.

    ``act``: an EnvRunner-style forward (no gradient) on ``rows`` samples, agents in turn.
    ``train``: forward_train + values + backward + one Adam step on ``rows`` random samples.
    """
    import torch
    from ray.rllib.core.columns import Columns

    generator = torch.Generator().manual_seed(0)
    out = {m: {"act": [], "train": []} for m in algos}
    setups = {}
    for m, algo in algos.items():
        learner = algo.learner_group._learner
        module = learner.module[next(iter(learner.module.keys()))]
        obs_dim = module.observation_space.shape[0]
        obs = torch.rand(rows, obs_dim, generator=generator)
        if m != "plain":
            obs[:, -1] = torch.arange(rows) % agents
        params = [p for p in module.parameters() if p.requires_grad]
        setups[m] = (module, obs, torch.optim.Adam(params, lr=1e-6))
    for _ in range(reps):
        for m, (module, obs, optimizer) in setups.items():
            batch = {Columns.OBS: obs}
            start = time.perf_counter()
            with torch.no_grad():
                module.forward_exploration(batch)
            out[m]["act"].append((time.perf_counter() - start) / rows * 1e6)
            start = time.perf_counter()
            fwd = module.forward_train(batch)
            loss = fwd[Columns.ACTION_DIST_INPUTS].square().mean() + module.compute_values(batch, fwd.get(Columns.EMBEDDINGS)).mean()
            optimizer.zero_grad()
            loss.backward()
            optimizer.step()
            out[m]["train"].append((time.perf_counter() - start) / rows * 1e6)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--agents", type=int, default=120)
    parser.add_argument("--types", type=int, default=3)
    parser.add_argument("--batch", type=int, default=400, help="train batch in env steps")
    parser.add_argument("--rounds", type=int, default=8)
    parser.add_argument("--iters", type=int, default=1, help="iterations per configuration per round")
    parser.add_argument("--module-reps", type=int, default=50)
    parser.add_argument("--methods", default="plain,fups,nops,seps,adaps")
    args = parser.parse_args()

    import ray

    import rllib_adaps

    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    methods = args.methods.split(",")
    algos = {m: build(m, args.agents, args.types, args.batch) for m in methods}
    times = {m: [] for m in methods}
    for algo in algos.values():
        algo.train()  # warm-up
    for _ in range(args.rounds):
        for m, algo in algos.items():
            gc.collect()  # RLlib's episodes leave much garbage; collect it outside the timed span
            before = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            start = time.perf_counter()
            for _ in range(args.iters):
                after = algo.train()["env_runners"]["num_env_steps_sampled_lifetime"]
            times[m].append((time.perf_counter() - start) / ((after - before) * args.agents) * 1e6)
    module_times = module_step_times(algos, args.agents, rows=4 * args.agents, reps=args.module_reps)
    for algo in algos.values():
        algo.stop()

    def paired(reference, m, series):  # median over rounds of reference time / method time, same round
        return statistics.median(r / t for r, t in zip(series[reference], series[m]))

    print(f"BPS, {args.agents} agents of {args.types} types, batch {args.batch} env steps, 1 epoch, minibatch "
          f"{args.batch} (RLlib cuts it in agent rows); {args.rounds} rounds x {args.iters} iteration(s) per "
          f"configuration, taking turns")
    print("\nWhole PPO iterations (sampling + learning), us per agent step; ratio = median over rounds of "
          "FuPS time / this time in the same round (>= 1: as fast as FuPS or faster)")
    print(f"{'config':8} {'median':>8} {'min':>8} {'max':>8} {'FuPS/this':>10}")
    for m in methods:
        ratio = paired("fups", m, times) if "fups" in times else float("nan")
        print(f"{m:8} {statistics.median(times[m]):8.1f} {min(times[m]):8.1f} {max(times[m]):8.1f} {ratio:10.3f}")
    if "plain" in times and "fups" in times:
        print(f"FuPS (plugin) relative to plain RLlib, plain time / FuPS time (paired median): {paired('plain', 'fups', times):.3f}")

    rows = 4 * args.agents
    print(f"\nModule only ({rows} samples, {args.module_reps} reps interleaved), us per sample, median; "
          "act = EnvRunner forward, train = forward + values + backward + Adam step")
    print(f"{'config':8} {'act':>8} {'train':>8} {'FuPS/this act':>14} {'FuPS/this train':>16}")
    for m in methods:
        a, t = (statistics.median(module_times[m][k]) for k in ("act", "train"))
        fa, ft = (statistics.median(module_times["fups"][k]) for k in ("act", "train")) if "fups" in methods else (float("nan"),) * 2
        print(f"{m:8} {a:8.2f} {t:8.2f} {fa / a:14.3f} {ft / t:16.3f}")


if __name__ == "__main__":
    main()
