"""Cluster-scale runs on a real multi-node Ray cluster started on this machine.

Two nodes (``ray.cluster_utils.Cluster``); EnvRunners are forced onto different nodes by a
custom resource that each node has once. Masks, group modules and routing must be identical
on every actor, and with 2 Learners (torch DDP on CPU) the Learners' weights stay identical
for every method.
"""

import numpy as np
import pytest
import ray
from ray.cluster_utils import Cluster
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, module_id, runner_views
from rllib_adaps.rllib.module_ids import engine_module
from rllib_adaps.rllib.callback import RESULT_KEY


@pytest.fixture(scope="module")
def two_nodes():
    ray.shutdown()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 3, "resources": {"runner_slot": 1}})
    cluster.add_node(num_cpus=3, resources={"runner_slot": 1})
    ray.init(address=cluster.address, log_to_driver=False)
    yield cluster
    ray.shutdown()
    cluster.shutdown()


def base(num_env_runners=2, **runner_kwargs):
    return (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=2, **runner_kwargs)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
    )


def test_adaps_env_runners_on_two_nodes(two_nodes):
    """On RLlib's multi-agent path (the 2-Learner runs below take the fast path): both stay covered."""
    config = base(custom_resources_per_env_runner={"runner_slot": 1})
    algo = rllib_adaps.configure_sharing(config, "adaps", fast_path=False, shared_training_env_steps=300, identity_env_steps=300, num_clusters=3,
                                         **QUICK_FIT).build_algo()
    assert algo.config.is_multi_agent
    try:
        results = [algo.train() for _ in range(3)]
        assert results[-1][RESULT_KEY]["done"]
        learner = learner_views(algo)[0]
        nodes = algo.env_runner_group.foreach_env_runner(lambda er: ray.get_runtime_context().get_node_id(), local_env_runner=False)
        assert len(set(nodes)) == 2, "EnvRunners spread over both nodes"
        for runner in runner_views(algo):
            assert_same_module(learner, runner)
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
    finally:
        algo.stop()


# Every method is the one engine module; what differs is its tables and input width. The four
# below cover each kind: a slice per agent (NoPS), a slice per cluster fitted mid-run (SePS),
# masks fitted mid-run (AdaPS), a wider input (FuPS+id). FuPS is FuPS+id's module without the
# index columns and SNP-PS AdaPS's mask table with a row per agent, so they add no DDP case
# but would add two Learner-pair starts (about 10 s each, most of such a test).
@pytest.mark.parametrize("method", ["nops", "fups_id", "seps", "adaps"])
def test_two_learners_stay_identical(two_nodes, method):
    """One module per Learner, whatever the method: DDP pairs its all-reduces correctly (the
    drift of RLlib's several-modules case cannot happen). AdaPS and SePS train shared first and
    install their tables at the start of the second iteration, on both Learners."""
    fitted = method in ("adaps", "seps")
    options = dict(shared_training_env_steps=300, identity_env_steps=300, num_clusters=3, **QUICK_FIT) if fitted else {}
    config = base(num_env_runners=0).learners(num_learners=2)  # sampling on the driver: no EnvRunner actor
    algo = rllib_adaps.configure_sharing(config, method, **options).build_algo()
    try:
        for _ in range(2 if fitted else 1):  # one iteration: one all-reduced step per minibatch of 150 agent rows
            result = algo.train()
        first, second = learner_views(algo)
        assert first["module_ids"] == second["module_ids"] == [module_id(algo)]
        assert_same_module(first, second)  # bit-identical weights and tables
        if fitted:
            assert result[RESULT_KEY]["done"] and first["agent_cluster"].tolist() == result[RESULT_KEY]["labels"]
        local = engine_module(algo.env_runner, module_id(algo))  # the driver's EnvRunner got the Learners' module
        np.testing.assert_array_equal(local.agent_cluster.numpy(), first["agent_cluster"])
        np.testing.assert_array_equal(local.actor.hidden[0].weight.detach().numpy(), first["actor.hidden.0.weight"])
    finally:
        algo.stop()
