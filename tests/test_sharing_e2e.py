"""Each of the six methods trains for real on RLlib PPO with 2 remote EnvRunners.

Checks: identity pre-training happens exactly once; afterwards masks / group modules and the
agent -> module routing on every remote EnvRunner equal those on the Learner; training goes
on and reports returns; trainable parameter counts follow the method.
"""

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from rllib_adaps.callback import RESULT_KEY, foreach_learner

TYPES = [2, 2, 2]
N = sum(TYPES)
HIDDEN = 64


def ppo(env="bps", env_config=None):
    return (
        PPOConfig()
        .environment(env, env_config=env_config or {"agents_per_type": TYPES, "max_steps": 25})
        .env_runners(num_env_runners=2, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=400, minibatch_size=200, num_epochs=2)
        .debugging(seed=0)
    )


def learner_view(algo):
    def read(learner):
        return {
            mid: {
                "params": sum(p.numel() for p in learner.module[mid].parameters() if p.requires_grad),
                "masks": learner.module[mid].unwrapped().actor_masks.numpy().copy(),
                "groups": learner.module[mid].unwrapped().agent_groups.numpy().copy(),
                "weight": learner.module[mid].unwrapped().state_dict()["actor.hidden.0.weight"].numpy().copy(),
            }
            for mid in learner.module.keys()
        }

    return foreach_learner(algo, read)[0]


def runner_views(algo):
    def read(er):
        return {
            "mapping": {f"agent_{i}": er.config.policy_mapping_fn(f"agent_{i}", None) for i in range(N)},
            "modules": {
                mid: {"masks": er.module[mid].actor_masks.numpy().copy(), "groups": er.module[mid].agent_groups.numpy().copy(),
                      "weight": er.module[mid].actor.hidden[0].weight.detach().numpy().copy()}
                for mid in er.module.keys()
            },
        }

    return algo.env_runner_group.foreach_env_runner(read, local_env_runner=False)


@pytest.fixture(scope="module")
def trained(ray_local):
    """Trains every method for 3 iterations (pre-training after the first) and records views."""
    records = {}
    for method in rllib_adaps.METHODS:
        options = {"pretrain_env_steps": 400, "identity_env_steps": 400, "num_clusters": 3} if method in ("adaps", "seps") else {}
        algo = rllib_adaps.configure_sharing(ppo(), method, **options).build_algo()
        try:
            results = [algo.train() for _ in range(3)]
            records[method] = {"results": results, "learner": learner_view(algo), "runners": runner_views(algo)}
        finally:
            algo.stop()
    return records


@pytest.mark.parametrize("method", rllib_adaps.METHODS)
def test_training_goes_on_and_reports_returns(trained, method):
    results = trained[method]["results"]
    steps = [r["env_runners"]["num_env_steps_sampled_lifetime"] for r in results]
    assert steps == sorted(steps) and steps[-1] > steps[0] > 0
    assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    learner_metrics = results[-1]["learners"]
    assert any(np.isfinite(v.get("total_loss", np.nan)) for k, v in learner_metrics.items() if k != "__all_modules__")


@pytest.mark.parametrize("method", ["adaps", "seps"])
def test_pretraining_happens_once_and_is_logged(trained, method):
    summaries = [r[RESULT_KEY] for r in trained[method]["results"]]
    assert all(s["done"] for s in summaries)
    assert len({s["env_steps_at_fit"] for s in summaries}) == 1  # fitted once, at iteration 1
    s = summaries[-1]
    assert s["num_clusters"] == 3 and sum(s["cluster_sizes"]) == N
    assert np.isfinite(s["vae_loss"]) and "adjusted_rand_index" in s


def test_adaps_masks_identical_on_learner_and_every_runner(trained):
    rec = trained["adaps"]
    learner = rec["learner"]["shared"]
    assert (learner["groups"] >= 0).all()
    labels = rec["results"][-1][RESULT_KEY]["labels"]
    assert learner["groups"].tolist() == labels
    # Agents of one cluster share a mask row; different clusters differ.
    for a in range(N):
        for b in range(N):
            same = labels[a] == labels[b]
            assert np.array_equal(learner["masks"][a], learner["masks"][b]) == same
    assert len(rec["runners"]) == 2
    for runner in rec["runners"]:
        assert set(runner["mapping"].values()) == {"shared"}
        np.testing.assert_array_equal(runner["modules"]["shared"]["masks"], learner["masks"])
        np.testing.assert_array_equal(runner["modules"]["shared"]["groups"], learner["groups"])
        np.testing.assert_allclose(runner["modules"]["shared"]["weight"], learner["weight"])


def test_seps_groups_and_mapping_identical_on_learner_and_every_runner(trained):
    rec = trained["seps"]
    labels = rec["results"][-1][RESULT_KEY]["labels"]
    expected = {f"agent_{i}": f"group_{labels[i]}" for i in range(N)}
    assert sorted(rec["learner"]) == ["group_0", "group_1", "group_2"]
    for runner in rec["runners"]:
        assert runner["mapping"] == expected
        assert sorted(runner["modules"]) == sorted(rec["learner"])
        for mid, module in runner["modules"].items():
            np.testing.assert_allclose(module["weight"], rec["learner"][mid]["weight"])


def test_nops_routes_each_agent_to_its_own_module(trained):
    for runner in trained["nops"]["runners"]:
        assert runner["mapping"] == {f"agent_{i}": f"agent_{i}" for i in range(N)}


def test_trainable_parameter_counts(trained):
    count = {m: sum(v["params"] for v in trained[m]["learner"].values()) for m in rllib_adaps.METHODS}
    fups = count["fups"]
    assert count["nops"] == N * fups
    assert count["seps"] == 3 * fups
    assert count["adaps"] == count["snp"] == fups
    assert count["fups_id"] - fups == 2 * N * HIDDEN  # wider first layer of actor and critic


def test_adaps_on_lbf_with_automatic_k(ray_local):
    config = ppo("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 6, "foods": 2, "max_steps": 25})
    algo = rllib_adaps.configure_sharing(config, "adaps", pretrain_env_steps=400, identity_env_steps=400).build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        summary = results[-1][RESULT_KEY]
        assert summary["done"] and 2 <= summary["num_clusters"] <= 5
        assert set(summary["davies_bouldin"]) == {"2", "3", "4", "5"}
        masks = learner_view(algo)["shared"]["masks"]
        for runner in runner_views(algo):
            np.testing.assert_array_equal(runner["modules"]["shared"]["masks"], masks)
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()
