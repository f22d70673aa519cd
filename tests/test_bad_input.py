"""Bad input is refused before training starts, with a message naming problem and remedy."""

import gymnasium as gym
import numpy as np
import pytest
from ray.rllib.algorithms.ppo import PPOConfig
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
        if config.get("continuous"):
            self.action_spaces = {a: gym.spaces.Box(-1, 1, (2,), np.float32) for a in self.agents}
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
        (bps, "seps", {"num_clusters": 0}, "num_clusters \\(K\\) must be in \\[1, 3\\]"),
        (bps, "seps", {"num_clusters": 4}, "num_clusters \\(K\\) must be in \\[1, 3\\]"),
        (bps, "adaps", {"shared_training_env_steps": -1}, "shared_training_env_steps must be >= 0"),
        (bps, "seps", {"pretrain_env_steps": 20_000}, "'pretrain_env_steps' is now 'shared_training_env_steps'.*default is 0"),
        (bps, "adaps", {"delay_env_steps": 100}, "'delay_env_steps' was merged into 'shared_training_env_steps'"),
        (bps, "adaps", {"identity_env_steps": -5}, "identity_env_steps must be >= 1"),
        (bps, "adaps", {"z_dim": 0}, "z_dim must be >= 1"),
        (bps, "adaps", {"kl_weight": -1.0}, "kl_weight must be >= 0"),
        (bps, "adaps", {"reconstruct": ["state"]}, "reconstruct must be a non-empty subset"),
        (bps, "adaps", {"recluster_every_env_steps": 0}, "recluster_every_env_steps must be >= 1"),
        (bps, "seps", {"identity_leaks": "ignore"}, "identity_leaks must be one of \\('reconstruct', 'drop', 'read'\\)"),
        (bps, "adaps", {"drop_identity_leaks": True}, "'drop_identity_leaks' is now 'identity_leaks'.*'drop' \\(the old True\\)"),
        (bps, "adaps", {"n_clusters": 3},
         "Unknown option\\(s\\) for sharing method 'adaps': 'n_clusters' \\(did you mean 'num_clusters'\\?\\); valid options: .*'mask_seed'"),
        (bps, "fups", {"num_clusters": 3}, "sharing method 'fups': 'num_clusters'; it takes no options"),
        (bps, "snp", {"pruning_rate": 1.0}, "pruning_rate must be in \\[0, 1\\)"),
        (bps, "adaps", {"masked_networks": ["policy"]}, "masked_networks must be a non-empty subset"),
        (lambda: own({"obs_dims": [4, 6, 4]}), "adaps", {"pad_observations": False}, "observation sizes \\[4, 6\\].*pad_observations=True"),
        (lambda: own({"continuous": True}), "fups", {}, "only Discrete action spaces are supported"),
        (lambda: own({"obs_dims": [[2, 2], [2, 2], [2, 2]]}), "fups", {}, "needs flat Box observations"),
        (lambda: PPOConfig().environment("no_such_env"), "fups", {}, "Unknown env 'no_such_env'"),
        (lambda: PPOConfig(), "fups", {}, "needs an env"),
        (lambda: PPOConfig().environment("bps", env_config={"agents_per_type": [1, 1]}), "adaps", {}, "set num_clusters"),
    ],
)
def test_configure_sharing_refuses(config, method, options, message):
    with pytest.raises(ValueError, match=message):
        configure_sharing(config(), method, **options)


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


def test_callback_refuses_bad_method_and_options():
    with pytest.raises(ValueError, match="Unknown sharing method 'adapss'. Did you mean 'adaps'"):
        rllib_adaps.IdentityPretrainingCallback(method="adapss")
    with pytest.raises(ValueError, match="Unknown option\\(s\\) for sharing method 'adaps': 'clusters' \\(did you mean 'num_clusters'"):
        rllib_adaps.IdentityPretrainingCallback.configured(method="adaps", clusters=3)
