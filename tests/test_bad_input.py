"""Bad input is refused before training starts, with a message naming problem and remedy."""

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig
from pettingzoo import ParallelEnv
from ray.rllib.env.multi_agent_env import MultiAgentEnv

import rllib_adaps
from rllib_adaps import AgentIndexObservations, AgentModuleMapping, configure_sharing


class TwoKinds(MultiAgentEnv):
    """Three agents; spaces chosen by env_config to provoke each error."""

    def __init__(self, config=None):
        super().__init__()
        config = config or {}
        self.possible_agents = self.agents = ["a", "b", "c"]
        dims = config.get("obs_dims", [4, 4, 4])
        self.observation_spaces = {a: gym.spaces.Box(-1, 1, (d,) if isinstance(d, int) else tuple(d), np.float32) for a, d in zip(self.agents, dims)}
        if config.get("unbounded_actions"):
            self.action_spaces = {a: gym.spaces.Box(-np.inf, np.inf, (2,), np.float32) for a in self.agents}
        elif config.get("multi_discrete"):
            self.action_spaces = {a: gym.spaces.MultiDiscrete([3, 3]) for a in self.agents}
        else:
            self.action_spaces = {a: gym.spaces.Discrete(3) for a in self.agents}

    def reset(self, *, seed=None, options=None):
        return {a: s.sample() for a, s in self.observation_spaces.items()}, {}

    def step(self, actions):
        obs = {a: s.sample() for a, s in self.observation_spaces.items()}
        return obs, {a: 0.0 for a in obs}, {"__all__": False}, {"__all__": False}, {}


def bps():
    return PPOConfig().environment("bps", env_config={"agents_per_type": [1, 1, 1]})


def own(env_config=None):
    return PPOConfig().environment(TwoKinds, env_config=env_config or {})


@pytest.mark.parametrize(
    "config, method, options, message",
    [
        (bps, "adapss", {}, "Unknown sharing method 'adapss'. Did you mean 'adaps'"),
        (bps, "adaps", {"mask_threshold": 0.0}, "lambda must be in \\(0, 1\\)"),
        (bps, "adaps", {"mask_threshold": 1.2}, "lambda must be in \\(0, 1\\)"),
        (bps, "seps", {"num_clusters": 0}, "num_clusters must be an int >= 1 or None, got 0"),
        (bps, "seps", {"num_clusters": 4}, "num_clusters \\(K\\) must be in \\[1, 3\\]"),
        (bps, "adaps", {"shared_training_env_steps": -1}, "shared_training_env_steps must be an int >= 0"),
        (bps, "adaps", {"identity_env_steps": -5}, "identity_env_steps must be an int >= 1"),
        (bps, "adaps", {"identity_env_steps": 3000.5}, "identity_env_steps must be an int >= 1"),
        (bps, "adaps", {"vae": {"z_dim": 0}}, "vae.z_dim must be an int >= 1"),
        (bps, "adaps", {"vae": {"kl_weight": -1.0}}, "vae.kl_weight must be >= 0"),
        (bps, "adaps", {"vae": {"reconstruct": ["state"]}}, "vae.reconstruct must be a non-empty subset"),
        (bps, "adaps", {"vae": 3}, "Options of vae must be a mapping"),
        (bps, "adaps", {"z_dim": 4}, "'z_dim' is an option of 'vae' for sharing method 'adaps': write vae=\\{'z_dim': ...\\}"),
        (bps, "adaps", {"recluster_every_env_steps": 0}, "recluster_every_env_steps must be an int >= 1 or None"),
        (bps, "seps", {"vae": {"identity_leaks": "ignore"}}, "identity_leaks must be one of \\('reconstruct', 'drop', 'read'\\)"),
        (bps, "adaps", {"n_clusters": 3},
         "Unknown option 'n_clusters' for sharing method 'adaps'. Did you mean 'num_clusters'\\? \\(valid options: .*mask_seed"),
        (bps, "fups", {"num_clusters": 3}, "Unknown option 'num_clusters' for sharing method 'fups'. \\(it takes no options\\)"),
        (bps, "adaps", {"mask_threshold": "0.3"}, "mask_threshold must be a number"),
        (bps, "snp", {"masked_networks": "actor"}, "masked_networks must be a list such as \\['actor'\\], got the string 'actor'"),
        (bps, "snp", {"pruning_rate": 1.0}, "pruning_rate must be a number in \\[0, 1\\)"),
        (bps, "adaps", {"masked_networks": ["policy"]}, "masked_networks must be a non-empty subset"),
        (lambda: own({"obs_dims": [4, 6, 4]}), "adaps", {"pad_observations": False}, "observation sizes \\[4, 6\\].*pad_observations=True"),
        (lambda: own({"unbounded_actions": True}), "fups", {}, "continuous actions need a flat Box with finite bounds"),
        (lambda: own({"multi_discrete": True}), "fups", {}, "only Discrete and flat Box action spaces are supported"),
        (lambda: own({"obs_dims": [[2, 2], [2, 2], [2, 2]]}), "fups", {}, "needs flat Box observations"),
        (lambda: PPOConfig().environment("no_such_env"), "fups", {}, "Unknown env 'no_such_env'"),
        (lambda: PPOConfig(), "fups", {}, "needs an env"),
        (lambda: PPOConfig().environment("bps", env_config={"agents_per_type": [1, 1]}), "adaps", {}, "set num_clusters"),
    ],
)
def test_configure_sharing_refuses(config, method, options, message):
    with pytest.raises(ValueError, match=message):
        configure_sharing(config(), method, **options)


def test_a_config_that_is_not_an_algorithm_config_is_named():
    with pytest.raises(TypeError, match="configure_sharing takes an AlgorithmConfig .* got dict"):
        configure_sharing({"env": "bps"}, "fups")


def test_padding_makes_different_observation_sizes_share_one_network():
    config = configure_sharing(own({"obs_dims": [4, 6, 4]}), "fups")
    spec = config.rl_module_spec  # one spec, module id "shared" (a plain MultiAgentEnv: the multi-agent path)
    assert config.policies.keys() == {"shared"}
    assert spec.observation_space.shape == (7,)  # 6 + the agent index


def test_agent_appearing_after_setup_is_a_clear_error():
    mapping = AgentModuleMapping({"agent_0": "shared"})
    with pytest.raises(ValueError, match="Agent 'agent_9' has no module.*appear after"):
        mapping("agent_9", None)
    connector = AgentIndexObservations(agent_ids=["agent_0"], obs_dim=2)
    space = gym.spaces.Dict({"agent_0": gym.spaces.Box(-1, 1, (2,)), "agent_9": gym.spaces.Box(-1, 1, (2,))})
    with pytest.raises(ValueError, match="'agent_9' is not among the agents"):
        connector.recompute_output_observation_space(space, None)


def test_callback_takes_no_options_of_its_own():
    """The callback reads the method and options from the module, so none can disagree with it."""
    with pytest.raises(TypeError, match="SharingCallback takes no arguments.*model_config"):
        rllib_adaps.SharingCallback(method="adaps", mask_threshold=0.8)


def test_sharing_options_in_model_config_are_refused_on_the_configure_route():
    config = bps().rl_module(model_config={"mask_threshold": 0.8})
    with pytest.raises(ValueError, match="model_config holds \\['mask_threshold'\\].*pass the method and its options to configure_sharing"):
        configure_sharing(config, "adaps")


class BoxActions(ParallelEnv):
    """A PettingZoo env with continuous actions whose step reads ``action.shape``, as mpe2's do:
    stepped with an integer it would fail inside the env."""

    metadata = {"name": "box_actions"}

    def __init__(self):
        self.possible_agents = ["a", "b", "c"]
        self.agents = []

    def observation_space(self, agent):
        return gym.spaces.Box(-1, 1, (3,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Box(-1, 1, (2,), np.float32)

    def reset(self, seed=None, options=None):
        self.agents = list(self.possible_agents)
        return {a: np.zeros(3, np.float32) for a in self.agents}, {a: {} for a in self.agents}

    def step(self, actions):
        for action in actions.values():
            assert action.shape == (2,)
        obs = {a: np.zeros(3, np.float32) for a in self.agents}
        return obs, {a: 0.0 for a in obs}, {a: False for a in obs}, {a: False for a in obs}, {a: {} for a in obs}


@pytest.mark.parametrize("fast_path", [None, False])
def test_box_actions_env_is_checked_with_box_actions(fast_path):
    """The fast-path check steps the env with an action of its own kind (the middle of the Box)."""
    from ray.tune.registry import register_env

    from rllib_adaps.envs import OrderedParallelEnv
    from rllib_adaps.rllib.module_ids import sharing_module_id

    register_env("box_actions", lambda cfg: OrderedParallelEnv(BoxActions()))
    config = configure_sharing(PPOConfig().environment("box_actions"), "adaps", fast_path=fast_path)
    assert sharing_module_id(config) == ("shared" if fast_path is False else "default_policy")
    assert config.rl_module_spec.action_space == gym.spaces.Box(-1, 1, (2,), np.float32)


@pytest.mark.parametrize("method", ["adaps", "seps"])
def test_a_fixed_k_that_space_groups_split_is_allocated_for(ray_local, method):
    """Roles env: leader and followers share spaces, scouts have their own. K = 1 is always split
    into 2 clusters by space; the module has room for them and training goes on."""
    config = (
        PPOConfig()
        .environment("roles", env_config={"agents_per_role": [1, 2, 2], "max_steps": 20})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
    )
    config = configure_sharing(config, method, num_clusters=1, identity_env_steps=100, min_transitions_per_agent=50,
                               vae={"min_updates": 20, "epochs": 1})
    algo = config.build_algo()
    try:
        summary = algo.train()["identity_pretraining"]
        assert summary["done"] and summary["num_clusters"] == 2
        assert summary["labels"] == [0, 0, 0, 1, 1]  # leader and followers; scouts
        assert "split by observation/action space" in summary["k_selection"]["criterion"]
        module = algo.get_module(rllib_adaps.sharing_module_id(algo))
        allocated = module.num_slices if method == "seps" else module.mask_table.shape[0] - 1
        assert allocated == 2  # min(K, 3) + min(K, 2) with K = 1
        assert algo.train()["env_runners"]["num_env_steps_sampled_lifetime"] > 0
    finally:
        algo.stop()
