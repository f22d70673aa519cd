"""The README's manual route honours every sharing option, checked on what the run does.

The config is assembled by hand (``AdaPSModule`` / ``ParameterSharingModule`` with the method's
options in ``model_config``, ``AgentIndexConnector``, ``SharingCallback`` with no arguments) and
trained for real. Each option gets its own test against one run with every option away from
its default: the identity fit's arguments are recorded on the driver, the installed masks are
recomputed from the fit's centres, and the module on a remote EnvRunner is compared.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest
from ray import cloudpickle
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.rl_module.rl_module import RLModuleSpec

from rllib_adaps import AdaPSModule, AgentIndexConnector, AgentModuleMapping, ParameterSharingModule, SharingCallback
from rllib_adaps.core.identity import VAEOptions
from rllib_adaps.core.masks import cluster_masks, random_pruning_masks
from rllib_adaps.envs import make_parallel_env
from rllib_adaps.rllib import callback as callback_module
from rllib_adaps.rllib.module_ids import engine_module
from rllib_adaps.rllib.shims import foreach_learner

# ``module_facts`` runs inside EnvRunner actors, which cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TYPES = [2, 2, 2]
ENV_CONFIG = {"agents_per_type": TYPES, "max_steps": 25}
HIDDEN = [32, 32]
BATCH = 200  # env steps per iteration

VAE = {"z_dim": 4, "kl_weight": 1e-3, "epochs": 1, "batch_size": 64, "min_updates": 40, "lr": 2e-3,
       "reconstruct": ["reward"], "identity_leaks": "read"}
#: Every AdaPS option away from its default.
ADAPS_OPTIONS = {
    "shared_training_env_steps": 2 * BATCH,
    "identity_env_steps": 150,
    "min_transitions_per_agent": 200,  # > 150 per agent: one collection is not enough
    "num_clusters": 3,
    "recluster_every_env_steps": 2 * BATCH,
    "seed": 7,
    "vae": VAE,
    "mask_threshold": 0.8,
    "mask_seed": 3,
    "masked_networks": ["actor"],
}


def manual_config(module_class, model_config, num_env_runners=1):
    """What a user writes without configure_sharing: one module for every agent, the index connector."""
    env = make_parallel_env("bps", ENV_CONFIG)
    agents = list(env.possible_agents)
    obs_dim = int(env.observation_space(agents[0]).shape[0])
    return (
        PPOConfig()
        .environment("bps", env_config=ENV_CONFIG)
        .multi_agent(policies={"shared"}, policy_mapping_fn=AgentModuleMapping({a: "shared" for a in agents}))
        .rl_module(rl_module_spec=RLModuleSpec(
            module_class=module_class,
            observation_space=gym.spaces.Box(-np.inf, np.inf, (obs_dim + 1,), np.float32),
            action_space=env.action_space(agents[0]),
            model_config={"agent_ids": agents, "fcnet_hiddens": HIDDEN, **model_config},
        ))
        .env_runners(num_env_runners=num_env_runners, num_envs_per_env_runner=2, env_to_module_connector=AgentIndexConnector(agents, obs_dim))
        .training(train_batch_size_per_learner=BATCH, minibatch_size=100, num_epochs=1)
        .callbacks(SharingCallback)
        .debugging(seed=0)
    )


def module_facts(holder):
    module = engine_module(holder, "shared")
    return {"mask_table": module.mask_table.cpu().numpy().copy(), "agent_mask": module.agent_mask.cpu().numpy().copy(),
            "mask_actor": module.mask_actor, "mask_critic": module.mask_critic, "spec": module.sharing_spec}


@pytest.fixture(scope="module")
def adaps_run(ray_local):
    """Trains until the second fit (the re-clustering); records every fit's arguments and outcome."""
    fits = []
    original = callback_module.fit_identities

    def recording_fit(*args, **kwargs):
        result = original(*args, **kwargs)
        fits.append({"kwargs": kwargs, "transitions": len(args[0]), "result": result})
        return result

    callback_module.fit_identities = recording_fit
    algo = manual_config(AdaPSModule, ADAPS_OPTIONS).build_algo()
    try:
        results = [algo.train() for _ in range(5)]
        yield {
            "fits": fits, "results": results, "callback": algo.callbacks,
            "learner": foreach_learner(algo, module_facts)[0],
            "runner": algo.env_runner_group.foreach_env_runner(module_facts, local_env_runner=False)[0],
        }
    finally:
        callback_module.fit_identities = original
        algo.stop()


def test_every_copy_of_the_module_holds_the_options_given(adaps_run):
    for facts in (adaps_run["learner"], adaps_run["runner"]):
        options = facts["spec"].options
        assert facts["spec"].method == "adaps"
        assert {k: getattr(options, k) for k in ADAPS_OPTIONS if k not in ("vae", "masked_networks")} == {
            k: v for k, v in ADAPS_OPTIONS.items() if k not in ("vae", "masked_networks")}
        assert options.vae == VAEOptions(**VAE) and list(options.masked_networks) == ["actor"]
    np.testing.assert_array_equal(adaps_run["learner"]["mask_table"], adaps_run["runner"]["mask_table"])


def test_mask_threshold_and_mask_seed_make_the_installed_masks(adaps_run):
    last = adaps_run["fits"][-1]["result"]
    expected = np.concatenate(cluster_masks(last.centres, HIDDEN, threshold=0.8, seed=3), axis=1) > 0
    installed = adaps_run["learner"]["mask_table"]
    np.testing.assert_array_equal(installed[1 : 1 + last.num_clusters], expected)
    np.testing.assert_array_equal(adaps_run["learner"]["agent_mask"], last.labels + 1)
    default = np.concatenate(cluster_masks(last.centres, HIDDEN), axis=1) > 0
    assert expected.mean() < default.mean()  # lambda 0.8 keeps fewer neurons than the default 0.2


def test_masked_networks(adaps_run):
    for facts in (adaps_run["learner"], adaps_run["runner"]):
        assert facts["mask_actor"] and not facts["mask_critic"]


def test_num_clusters(adaps_run):
    for fit in adaps_run["fits"]:
        assert fit["kwargs"]["num_clusters"] == 3 and fit["result"].num_clusters == 3
        assert fit["result"].k_selection["criterion"] == "given"


def test_vae_options_and_seed_reach_the_fit(adaps_run):
    for fit in adaps_run["fits"]:
        assert fit["kwargs"]["vae"] == VAEOptions(**VAE) and fit["kwargs"]["seed"] == 7
        assert fit["result"].identities.shape == (sum(TYPES), 4)  # vae.z_dim


def test_identity_env_steps_and_min_transitions_per_agent(adaps_run):
    """150 env steps give 150 transitions per agent, fewer than 200: a second collection follows."""
    for fit in adaps_run["fits"]:
        assert fit["kwargs"]["min_transitions_per_agent"] == 200
        assert 2 * 150 * sum(TYPES) <= fit["transitions"] < 3 * 150 * sum(TYPES)


def test_shared_training_env_steps_and_recluster_every_env_steps(adaps_run):
    """No fit before 400 env steps of shared training; then one each time 400 more have passed
    (the collections' own env steps count as sampled, so that is every iteration here)."""
    summaries = [r["identity_pretraining"] for r in adaps_run["results"]]
    assert not summaries[0]["done"]  # 200 env steps < shared_training_env_steps
    fit_steps = sorted({s["env_steps_at_fit"] for s in summaries if s["done"]})
    assert len(adaps_run["fits"]) == len(fit_steps) >= 2
    assert fit_steps[0] >= 2 * BATCH and all(b - a >= 2 * BATCH for a, b in zip(fit_steps, fit_steps[1:]))


def test_snp_options_on_the_manual_route(ray_local):
    """SNP-PS through the plain engine class: pruning_rate, mask_seed and masked_networks."""
    options = {"sharing_method": "snp", "pruning_rate": 0.25, "mask_seed": 5, "masked_networks": ["critic"]}
    algo = manual_config(ParameterSharingModule, options).build_algo()
    try:
        algo.train()
        expected = np.concatenate(random_pruning_masks(sum(TYPES), HIDDEN, 0.25, 5), axis=1) > 0
        for facts in (foreach_learner(algo, module_facts)[0],
                      algo.env_runner_group.foreach_env_runner(module_facts, local_env_runner=False)[0]):
            np.testing.assert_array_equal(facts["mask_table"][1:], expected)
            assert facts["mask_critic"] and not facts["mask_actor"] and facts["spec"].options.pruning_rate == 0.25
    finally:
        algo.stop()


def test_an_option_of_another_method_is_refused_before_training(ray_local):
    """Refused where the module is built (here the local EnvRunner; a remote one logs the same
    message, and RLlib then fails to read the spaces of the dead actor)."""
    with pytest.raises(ValueError, match="'pruning_rate'\\] is not an option of sharing method 'adaps'"):
        manual_config(AdaPSModule, {"pruning_rate": 0.3}, num_env_runners=0).build_algo()


# --- seeds: every random part follows the run's seed unless an option fixes it ---------------
def test_derived_seeds_are_per_part_and_fixed_seeds_stay():
    from rllib_adaps.methods import SharingSpec
    from rllib_adaps.methods.base import derive_seed

    assert derive_seed(3, "seed") == derive_seed(3, "seed") != derive_seed(4, "seed")
    assert derive_seed(3, "seed") != derive_seed(3, "mask_seed")
    open_spec = SharingSpec.build("adaps")
    assert open_spec.options.resolved_seeds() == {"seed": None, "mask_seed": None}
    assert open_spec.with_run_seed(3).options.resolved_seeds() == {"seed": derive_seed(3, "seed"), "mask_seed": derive_seed(3, "mask_seed")}
    fixed = SharingSpec.build("adaps", {"mask_seed": 11}).with_run_seed(3)
    assert fixed.options.resolved_seeds() == {"seed": derive_seed(3, "seed"), "mask_seed": 11}


def test_snp_masks_follow_the_run_seed_on_every_copy(ray_local):
    """Two run seeds, two mask sets; each equals the masks drawn from the seed derived from it,
    on the Learner and on a remote EnvRunner."""
    from rllib_adaps.methods.base import derive_seed

    installed = {}
    for run_seed in (0, 1):
        algo = manual_config(ParameterSharingModule, {"sharing_method": "snp"}).debugging(seed=run_seed).build_algo()
        try:
            algo.train()
            expected = np.concatenate(random_pruning_masks(sum(TYPES), HIDDEN, 0.5, derive_seed(run_seed, "mask_seed")), axis=1) > 0
            copies = (foreach_learner(algo, module_facts)[0],
                      algo.env_runner_group.foreach_env_runner(module_facts, local_env_runner=False)[0])
            for facts in copies:
                np.testing.assert_array_equal(facts["mask_table"][1:], expected)
            installed[run_seed] = copies[0]["mask_table"]
        finally:
            algo.stop()
    assert not np.array_equal(installed[0], installed[1])


def test_adaps_vae_kmeans_and_mapping_network_follow_the_run_seed(ray_local):
    from rllib_adaps.methods.base import derive_seed

    fits = []
    original = callback_module.fit_identities

    def recording_fit(*args, **kwargs):
        fits.append({"kwargs": kwargs, "result": original(*args, **kwargs)})
        return fits[-1]["result"]

    callback_module.fit_identities = recording_fit
    options = {"identity_env_steps": 100, "min_transitions_per_agent": 50, "num_clusters": 3, "vae": VAE}
    algo = manual_config(AdaPSModule, options).debugging(seed=5).build_algo()
    try:
        result = algo.train()
        (fit,) = fits
        assert fit["kwargs"]["seed"] == derive_seed(5, "seed")
        seeds = result["identity_pretraining"]["seeds"]
        assert seeds == {"seed": derive_seed(5, "seed"), "mask_seed": derive_seed(5, "mask_seed")}
        expected = np.concatenate(cluster_masks(fit["result"].centres, HIDDEN, seed=seeds["mask_seed"]), axis=1) > 0
        np.testing.assert_array_equal(foreach_learner(algo, module_facts)[0]["mask_table"][1:4], expected)
    finally:
        callback_module.fit_identities = original
        algo.stop()
