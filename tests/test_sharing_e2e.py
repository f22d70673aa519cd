"""Each of the six methods trains for real on RLlib PPO (AdaPS and SePS with a remote EnvRunner).

Checks, through ``algo.train()``: every method takes the same number of optimizer steps per
iteration (counted on the Learner's optimizer); identity pre-training happens exactly once and
its scalars are in every result; the tables and weights on every remote EnvRunner equal the
Learner's; EnvRunners hold no critic; per-group returns and honest parameter counts are logged.
"""

import collections

import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig
from torch.optim.optimizer import register_optimizer_step_post_hook

import rllib_adaps
from rllib_adaps.rllib.callback import IDENTITY_SCALARS, RESULT_KEY, SHARING_KEY
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID
from rllib_adaps.rllib.shims import foreach_learner

from engine_views import QUICK_FIT, assert_same_module, learner_views, module_id, runner_views

TYPES = [2, 2, 2]
N = sum(TYPES)
HIDDEN = 64
ITERATIONS = 2


def ppo(env="bps", env_config=None, num_env_runners=1):
    return (
        PPOConfig()
        .environment(env, env_config=env_config or {"agents_per_type": TYPES, "max_steps": 25})
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=4)
        .training(train_batch_size_per_learner=400, minibatch_size=200, num_epochs=2)
        .debugging(seed=0)
    )


@pytest.fixture(scope="module")
def trained(ray_local):
    """Trains every method for 2 iterations (identities fitted at the start) and records views."""
    steps = collections.Counter()
    learner_optimizers = set()

    def count(optimizer, args, kwargs):
        if id(optimizer) in learner_optimizers:  # not the VAE's optimizer
            steps["learner"] += 1

    handle = register_optimizer_step_post_hook(count)
    records = {}
    try:
        for method in rllib_adaps.METHODS:
            # The default timeline: identities fitted at the start of the first train().
            options = {"identity_env_steps": 400, "num_clusters": 3, **QUICK_FIT} if method in ("adaps", "seps") else {}
            # A remote EnvRunner for the methods whose installs must reach it; the others sample
            # on the local EnvRunner (also inference-only), which saves an actor start each.
            config = ppo(num_env_runners=1 if method in ("adaps", "seps") else 0)
            algo = rllib_adaps.configure_sharing(config, method, **options).build_algo()
            try:
                learner_optimizers.clear()
                mid = module_id(algo)
                assert mid == FAST_PATH_MODULE_ID  # bps takes the fast path (agents as slots)
                learner_optimizers.update(foreach_learner(algo, lambda l: [id(o) for _, o in l.get_optimizers_for_module(mid)])[0])
                results, step_counts = [], []
                for _ in range(ITERATIONS):
                    steps["learner"] = 0
                    results.append(algo.train())
                    step_counts.append(steps["learner"])
                records[method] = {"results": results, "steps": step_counts, "learner": learner_views(algo)[0],
                                   "runners": runner_views(algo), "module_id": mid}
            finally:
                algo.stop()
    finally:
        handle.remove()
    return records


@pytest.mark.parametrize("method", rllib_adaps.METHODS)
def test_training_goes_on_and_reports_returns(trained, method):
    results = trained[method]["results"]
    steps = [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in results]
    assert steps == sorted(steps) and steps[-1] > steps[0] > 0
    assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    assert np.isfinite(results[-1]["learners"][trained[method]["module_id"]]["total_loss"])


def test_every_method_takes_the_same_optimizer_steps(trained):
    counts = {m: trained[m]["steps"] for m in rllib_adaps.METHODS}
    # 400 env steps x 6 agents = 2,400 agent rows, minibatches of 200 rows, 2 epochs. The
    # methods sampled by the driver take the array training step: exactly 24 steps. AdaPS and
    # SePS have a remote EnvRunner, so RLlib's step, which adds a loss-masked bootstrap row per
    # agent and episode chunk: a step or two more, the same for both.
    for method in ("nops", "fups", "fups_id", "snp"):
        assert counts[method] == [24] * ITERATIONS, counts
    assert counts["adaps"] == counts["seps"] and all(24 <= c <= 30 for c in counts["adaps"]), counts


@pytest.mark.parametrize("method", ["adaps", "seps"])
def test_pretraining_happens_once_and_its_scalars_are_in_every_result(trained, method):
    summaries = [r[RESULT_KEY] for r in trained[method]["results"]]
    assert all(s["done"] for s in summaries)
    # Fitted once, before any env step of training (the AdaPS paper's timeline): the first
    # update already ran with the installed masks or groups.
    assert {s["env_steps_at_fit"] for s in summaries} == {0}
    for s in summaries:
        assert set(IDENTITY_SCALARS) <= set(s)
    s = summaries[-1]
    assert s["num_clusters"] == 3 and sum(s["cluster_sizes"]) == N
    assert s["num_transitions"] >= N * 400  # 400 env steps collected (not 400 slot steps)
    assert np.isfinite(s["vae_loss"]) and np.isfinite(s["adjusted_rand_index"])


@pytest.mark.parametrize("method", rllib_adaps.METHODS)
def test_every_env_runner_holds_the_learners_module_without_critic(trained, method):
    rec = trained[method]
    mid = rec["module_id"]
    assert rec["learner"]["module_ids"] == [mid]
    assert len(rec["runners"]) == 1
    for runner in rec["runners"]:
        assert runner["module_ids"] == [mid] and runner["mapping"] == [mid] * N
        assert not runner["has_critic"]
        assert_same_module(rec["learner"], runner)


def test_tables_follow_the_method(trained):
    view = {m: trained[m]["learner"] for m in rllib_adaps.METHODS}
    assert view["nops"]["agent_slice"].tolist() == list(range(N))
    for m in ("fups", "fups_id", "snp", "adaps"):
        assert view[m]["agent_slice"].tolist() == [0] * N
    labels = trained["seps"]["results"][-1][RESULT_KEY]["labels"]
    assert view["seps"]["agent_slice"].tolist() == labels == view["seps"]["agent_cluster"].tolist()
    adaps_labels = trained["adaps"]["results"][-1][RESULT_KEY]["labels"]
    assert view["adaps"]["agent_mask"].tolist() == [k + 1 for k in adaps_labels]
    rows = view["adaps"]["mask_table"][view["adaps"]["agent_mask"]]
    for a in range(N):
        for b in range(N):
            assert np.array_equal(rows[a], rows[b]) == (adaps_labels[a] == adaps_labels[b])
    assert len({tuple(r) for r in view["snp"]["mask_table"][view["snp"]["agent_mask"]]}) == N


def test_per_group_returns_and_parameter_counts(trained):
    sharing = {m: trained[m]["results"][-1][SHARING_KEY] for m in rllib_adaps.METHODS}
    assert {m: s["num_groups"] for m, s in sharing.items()} == {"nops": N, "fups": 1, "fups_id": 1, "seps": 3, "snp": N, "adaps": 3}
    for m, s in sharing.items():
        returns = trained[m]["results"][-1]["env_runners"]["agent_episode_returns_mean"]
        for g, value in s["group_return_mean"].items():
            members = [f"agent_{i}" for i, gi in enumerate(s["group_of_agent"]) if gi == int(g)]
            assert value == pytest.approx(np.mean([returns[a] for a in members]))
    fups = sharing["fups"]["parameters_in_use"]
    assert sharing["nops"]["parameters_in_use"] == N * fups
    assert sharing["seps"]["parameters_in_use"] == sharing["seps"]["parameters_allocated"] == 3 * fups
    assert sharing["adaps"]["parameters_in_use"] == sharing["snp"]["parameters_in_use"] == fups
    assert sharing["fups_id"]["parameters_in_use"] - fups == 2 * N * HIDDEN  # wider first layer of actor and critic
    before = trained["seps"]["results"][0][SHARING_KEY]
    assert before["parameters_allocated"] == 3 * fups  # fitted at the end of iteration 1: reported after it


def test_seps_with_automatic_k_reports_unused_allocated_slices(ray_local):
    config = ppo().env_runners(num_env_runners=0, num_envs_per_env_runner=2)
    algo = rllib_adaps.configure_sharing(config, "seps", shared_training_env_steps=10**9).build_algo()
    try:
        sharing = algo.train()[SHARING_KEY]
        # K unknown until the fit: one slice per agent allocated, one (the shared one) in use.
        assert sharing["parameters_allocated"] == N * sharing["parameters_in_use"]
    finally:
        algo.stop()


def test_adaps_on_lbf_finds_the_levels_with_automatic_k(ray_local):
    """On RLlib's multi-agent path (the methods above run on the fast path): both stay covered.

    Each agent sees its own level (and the others' in a fixed order): the decoder must
    reconstruct these per-agent constants from the identity, so the default collection with
    the initial policy recovers the three levels exactly, K chosen automatically."""
    config = ppo("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 6, "foods": 2, "max_steps": 25}, num_env_runners=0)
    algo = rllib_adaps.configure_sharing(config, "adaps", fast_path=False).build_algo()
    assert algo.config.is_multi_agent
    try:
        results = [algo.train()]  # fitted at the start
        summary = results[-1][RESULT_KEY]
        assert summary["done"] and summary["identity_leak_features"] == 3  # own level + 2 other-level slots that differ
        assert summary["num_clusters"] == 3 and summary["adjusted_rand_index"] == 1.0
        learner = learner_views(algo)[0]
        for runner in runner_views(algo):
            assert_same_module(learner, runner)
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
