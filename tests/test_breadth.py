"""Continuous actions, recurrent policies and a centralised critic, for every sharing method.

Unit checks on the engine (padded action dims, unrolled recurrence, masked recurrent units,
what the critic reads), the envs' side (each agent's own dims and bounds, the critic's
columns), configure-time refusals, and real training through ``algo.train()`` with a
checkpoint restored in a fresh Algorithm and with 2 Learners.
"""

import sys

import gymnasium as gym
import numpy as np
import pytest
import torch
from mpe2 import simple_spread_v3
from pettingzoo import ParallelEnv
from ray import cloudpickle
from ray.rllib.algorithms.algorithm import Algorithm
from ray.rllib.algorithms.appo import APPOConfig
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.tune.registry import register_env

import rllib_adaps
from engine_views import QUICK_FIT, assert_same_module, learner_views, module_id, runner_views
from rllib_adaps.methods.spec import METHODS
from rllib_adaps.rllib.callback import RESULT_KEY
from rllib_adaps.envs.rllib_env import OrderedParallelEnv
from rllib_adaps.rllib.fast_path import SlotVectorEnv
from rllib_adaps.rllib.module import ParameterSharingModule
from rllib_adaps.rllib.module_ids import engine_module

# EnvRunner actors build the envs defined here, and cannot import this test module.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

AGENTS = ["a0", "a1", "a2", "a3"]
OBS_DIM = 6


class BoxAgents(ParallelEnv):
    """Three agents with Box actions of different sizes and bounds; the reward is minus the
    distance of the action to the middle of the agent's bounds, so the env sees what it got."""

    metadata = {"name": "box_agents"}

    def __init__(self, dims=(2, 3, 3), max_steps=10):
        self.possible_agents = [f"b{i}" for i in range(len(dims))]
        self.dims = dict(zip(self.possible_agents, dims))
        self.bounds = {a: (float(i), float(i) + 2.0 * (i + 1)) for i, a in enumerate(self.possible_agents)}
        self.max_steps, self.received = max_steps, []

    def observation_space(self, agent):
        return gym.spaces.Box(-1, 1, (3,), np.float32)

    def action_space(self, agent):
        low, high = self.bounds[agent]
        return gym.spaces.Box(low, high, (self.dims[agent],), np.float32)

    def state(self):
        return np.full(2, float(self.t), np.float32)

    @property
    def state_space(self):
        return gym.spaces.Box(0, self.max_steps, (2,), np.float32)

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return {a: np.full(3, 0.1 * i, np.float32) for i, a in enumerate(self.agents)}, {a: {} for a in self.agents}

    def step(self, actions):
        self.received.append({a: np.asarray(v).copy() for a, v in actions.items()})
        for a, v in actions.items():
            assert np.shape(v) == (self.dims[a],), (a, np.shape(v))
        self.t += 1
        rewards = {a: -float(np.abs(np.asarray(actions[a]) - np.mean(self.bounds[a])).sum()) for a in self.agents}
        done = self.t >= self.max_steps
        obs = {a: np.full(3, 0.1 * i + 0.01 * self.t, np.float32) for i, a in enumerate(self.agents)}
        return obs, rewards, {a: False for a in self.agents}, {a: done for a in self.agents}, {a: {} for a in self.agents}


def spread(config=None):
    return simple_spread_v3.parallel_env(N=3, continuous_actions=True, max_cycles=25)


def build(method="adaps", *, action_space=gym.spaces.Box(-1, 1, (3,), np.float32), central_dim=0, action_sizes=None, **model):
    module = ParameterSharingModule(
        observation_space=gym.spaces.Box(-10, 10, (OBS_DIM + central_dim + 1,), np.float32), action_space=action_space,
        model_config={"agent_ids": AGENTS, "fcnet_hiddens": [8, 8], "sharing_method": method, "action_sizes": action_sizes,
                      "central_dim": central_dim, **model})
    torch.manual_seed(0)
    return module


def observations(batch, central_dim=0, steps=None):
    shape = (batch,) if steps is None else (batch, steps)
    features = torch.randn(*shape, OBS_DIM + central_dim)
    index = torch.arange(batch).remainder(len(AGENTS)).float()
    index = index if steps is None else index[:, None].expand(batch, steps)
    return torch.cat([features, index[..., None]], dim=-1)


def install_masks(module):
    """Distinct random masks for two clusters (agents 0, 1 -> row 1; 2, 3 -> row 2)."""
    rng = np.random.default_rng(1)
    table = np.ones((3, module.mask_table.shape[1]), np.float32)
    table[1:] = rng.random((2, table.shape[1])) > 0.4
    module.set_tables(mask_table=table, agent_mask=np.array([1, 1, 2, 2]), agent_cluster=np.array([0, 0, 1, 1]))


# ---------------------------------------------------------------- engine
@pytest.mark.parametrize("method", METHODS)
def test_padded_action_dims_have_mean_zero_log_std_zero_and_no_gradient(method):
    module = build(method, action_sizes=[3, 2, 3, 1], free_log_std=method == "nops")
    obs = observations(8)
    out = module.forward_train({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert out.shape == (8, 6)
    mean, log_std = out.chunk(2, dim=-1)
    lacking = torch.arange(3)[None, :] >= torch.as_tensor([3, 2, 3, 1])[obs[:, -1].long()][:, None]
    assert torch.all(mean[lacking] == 0) and torch.all(log_std[lacking] == 0)
    assert torch.all(mean[~lacking] != 0)
    dist = module.get_train_action_dist_cls().from_logits(out)
    actions = dist.sample()
    params = [p for p in module.parameters() if p.requires_grad]
    own = torch.distributions.Normal(mean, log_std.exp()).log_prob(actions)
    padded_grads = torch.autograd.grad(own[lacking].sum(), params, allow_unused=True, retain_graph=True)
    assert all(g is None or g.abs().sum() == 0 for g in padded_grads)  # dims an agent lacks teach nothing
    own_grads = torch.autograd.grad(own[~lacking].sum(), params, allow_unused=True)
    assert sum(float(g.abs().sum()) for g in own_grads if g is not None) > 0


@pytest.mark.parametrize("cell", ["lstm", "gru"])
@pytest.mark.parametrize("method", ["nops", "adaps", "fups_id"])
def test_recurrent_sequence_equals_steps_carrying_state_and_masked_units_are_silent(method, cell):
    module = build(method, action_space=gym.spaces.Discrete(5), use_lstm=True, lstm_cell_size=7, recurrent_cell=cell)
    if method == "adaps":
        install_masks(module)
    assert module.is_stateful() and module.mask_table.shape[1] == 8 + 8 + 7  # the recurrent units are masked too
    batch, steps = 8, 5
    obs = observations(batch, steps=steps)
    state = {k: v[None].expand(batch, -1).clone() for k, v in module.get_initial_state().items()}
    whole = module.forward_train({Columns.OBS: obs, Columns.STATE_IN: state})
    carried = state
    for t in range(steps):
        step = module.forward_inference({Columns.OBS: obs[:, t : t + 1], Columns.STATE_IN: carried})
        torch.testing.assert_close(step[Columns.ACTION_DIST_INPUTS][:, 0], whole[Columns.ACTION_DIST_INPUTS][:, t])
        carried = step[Columns.STATE_OUT]
    for name in carried:
        torch.testing.assert_close(carried[name], whole[Columns.STATE_OUT][name])
    if method == "adaps":
        rows = module.mask_table[module.agent_mask[obs[:, 0, -1].long()]][:, -7:]
        assert torch.all(carried["h"][~rows] == 0) and torch.any(carried["h"][rows] != 0)


def test_recurrent_nops_loss_reaches_only_its_own_slice():
    module = build("nops", action_space=gym.spaces.Discrete(5), use_lstm=True, lstm_cell_size=4)
    obs = observations(4, steps=3)[1:2]  # agent 1 only
    state = {k: v[None].clone() for k, v in module.get_initial_state().items()}
    module.forward_train({Columns.OBS: obs, Columns.STATE_IN: state})[Columns.ACTION_DIST_INPUTS].sum().backward()
    for layer in (module.actor_cell.input_map, module.actor_cell.state_map, module.actor_head):
        touched = layer.weight.grad.abs().flatten(1).sum(1) > 0
        assert touched.tolist() == [False, True, False, False]


@pytest.mark.parametrize("sharing", ["method", "shared"])
def test_centralised_critic_reads_the_central_columns_and_the_actor_does_not(sharing):
    module = build("nops", action_space=gym.spaces.Discrete(5), central_dim=4, critic_input="state", critic_sharing=sharing)
    obs = observations(8, central_dim=4)
    changed = obs.clone()
    changed[:, OBS_DIM : OBS_DIM + 4] += 1.0
    before, after = module.forward_train({Columns.OBS: obs}), module.forward_train({Columns.OBS: changed})
    torch.testing.assert_close(before[Columns.ACTION_DIST_INPUTS], after[Columns.ACTION_DIST_INPUTS])
    assert not torch.allclose(module.compute_values({Columns.OBS: obs}), module.compute_values({Columns.OBS: changed}))
    assert module.critic.hidden[0].weight.shape[0] == (1 if sharing == "shared" else len(AGENTS))
    counts = module.parameter_counts()
    assert counts["in_use"] == counts["allocated"]


# ---------------------------------------------------------------- envs
def test_each_agent_gets_its_own_dims_scaled_to_its_own_bounds():
    copies = [BoxAgents(), BoxAgents()]
    slots = SlotVectorEnv(copies, ["b2", "b0", "b1"], critic_input="state")
    assert slots.single_action_space == gym.spaces.Box(-1, 1, (3,), np.float32)
    obs, _ = slots.reset(seed=0)
    assert obs.shape == (6, 3 + 2 + 1)
    actions = np.tile(np.array([[1.0, -1.0, 0.0], [5.0, -5.0, 9.0], [0.0, 0.0, 0.0]], np.float32), (2, 1))  # slots b2, b0, b1
    obs, rewards, *_ = slots.step(actions)
    got = copies[0].received[-1]
    np.testing.assert_allclose(got["b2"], [8.0, 2.0, 5.0])  # bounds [2, 8]
    np.testing.assert_allclose(got["b0"], [2.0, 0.0])  # clipped to [-1, 1], then bounds [0, 2]
    np.testing.assert_allclose(got["b1"], [3.0, 3.0, 3.0])  # the middle of [1, 5]
    np.testing.assert_allclose(obs[:, 3:5], 1.0)  # the global state after one step, in every slot


def test_joint_observation_columns_hold_every_agents_observation_in_agent_order():
    env = spread()
    slots = SlotVectorEnv([env], ["agent_2", "agent_0", "agent_1"], critic_input="joint_observations")
    obs, _ = slots.reset(seed=3)
    own = obs[:, :18]
    np.testing.assert_array_equal(obs[:, 18 : 18 + 54], np.tile(own.reshape(1, -1), (3, 1)))
    assert obs[:, -1].tolist() == [0, 1, 2]


# ---------------------------------------------------------------- configure time
@pytest.fixture
def registered(ray_local):
    register_env("box_agents", lambda cfg: OrderedParallelEnv(BoxAgents()))
    register_env("spread_continuous", lambda cfg: OrderedParallelEnv(spread()))
    register_env("mixed_kinds", lambda cfg: OrderedParallelEnv(MixedKinds()))


class MixedKinds(BoxAgents):
    def action_space(self, agent):
        return gym.spaces.Discrete(3) if agent == "b0" else super().action_space(agent)


@pytest.mark.parametrize("env, model, kwargs, config, match", [
    ("mixed_kinds", {}, {}, PPOConfig, "mix action space kinds"),
    ("box_agents", {"use_lstm": True}, {"fast_path": True}, PPOConfig, "fast path cannot run this config: recurrent"),
    ("box_agents", {"use_lstm": True}, {}, APPOConfig, "Recurrent policies .* run with PPO only"),
    ("box_agents", {"critic_input": "state"}, {"fast_path": False}, PPOConfig, "fast path only"),
    ("box_agents", {}, {"fast_path": False}, PPOConfig, "need one size for every agent"),
    ("lbf", {"critic_input": "state"}, {}, PPOConfig, "needs an env with a global state"),
    ("box_agents", {"critic_input": "state", "vf_share_layers": True}, {}, PPOConfig, "vf_share_layers=False"),
])
def test_unsupported_combinations_are_refused_at_configure_time(registered, env, model, kwargs, config, match):
    base = config().environment(env).rl_module(model_config=model)
    with pytest.raises(ValueError, match=match):
        rllib_adaps.configure_sharing(base, "fups", **kwargs)


def test_continuous_actions_need_normalized_actions(registered):
    with pytest.raises(ValueError, match="normalize_actions=True"):
        rllib_adaps.configure_sharing(PPOConfig().environment("box_agents", normalize_actions=False), "fups")


# ---------------------------------------------------------------- through algo.train()
def small(env, model, **runners):
    return (PPOConfig().environment(env).env_runners(num_envs_per_env_runner=2, **runners)
            .training(train_batch_size_per_learner=200, minibatch_size=100, num_epochs=1)
            .rl_module(model_config={"fcnet_hiddens": [16, 16], **model}))


FEATURES = {
    "continuous": ("spread_continuous", {"free_log_std": True}, {}),
    "recurrent": ("spread_continuous", {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 5, "recurrent_cell": "gru"}, {}),
    "central_state": ("spread_continuous", {"critic_input": "state", "critic_sharing": "shared"}, {}),
    "central_joint_multi_agent": ("box_agents", {"critic_input": "joint_observations"}, {"fast_path": False}),
}


@pytest.mark.parametrize("feature", list(FEATURES))
def test_adaps_trains_fits_and_restores_with_each_feature(registered, tmp_path, feature):
    """AdaPS (masks fitted mid-run, the most moving parts) with each feature: trains, installs
    its masks on every EnvRunner, and a checkpoint restored into a fresh Algorithm acts the same."""
    env, model, kwargs = FEATURES[feature]
    if env == "box_agents" and kwargs.get("fast_path") is False:
        register_env("box_agents", lambda cfg: OrderedParallelEnv(BoxAgents(dims=(3, 3, 3))))  # the multi-agent path needs one size
    options = dict(shared_training_env_steps=0, identity_env_steps=200, num_clusters=2, **QUICK_FIT)
    config = rllib_adaps.configure_sharing(small(env, model, num_env_runners=1), "adaps", **options, **kwargs)
    algo = config.build_algo()
    try:
        result = algo.train()
        assert result[RESULT_KEY]["done"] and np.isfinite(result["env_runners"]["episode_return_mean"])
        before = learner_views(algo)[0]
        for view in runner_views(algo):
            assert_same_module(before, view)
        checkpoint = algo.save_to_path(str(tmp_path / "ckpt"))
    finally:
        algo.stop()
    restored = Algorithm.from_checkpoint(checkpoint)
    try:
        assert_same_module(before, learner_views(restored)[0])
        summary = restored.train()[RESULT_KEY]
        assert summary["restored"] and summary["labels"] == result[RESULT_KEY]["labels"]
        module = engine_module(restored.env_runner, module_id(restored))
        assert module.continuous and module.recurrent == (feature == "recurrent")
        assert module.central_dim == {"central_state": 54, "central_joint_multi_agent": 9}.get(feature, 0)
    finally:
        restored.stop()


def test_two_learners_stay_identical_with_a_recurrent_continuous_actor_and_a_central_critic(registered):
    model = {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 5, "critic_input": "joint_observations"}
    config = rllib_adaps.configure_sharing(small("spread_continuous", model, num_env_runners=0).learners(num_learners=2), "nops")
    algo = config.build_algo()
    try:
        algo.train()
        first, second = learner_views(algo)
        assert_same_module(first, second)
        assert any(k.startswith("actor_cell") for k in first)
    finally:
        algo.stop()


@pytest.mark.parametrize("method", ["seps", "snp", "fups_id"])
def test_every_method_trains_with_every_feature_at_once(registered, method):
    """Continuous actions, an LSTM and a centralised critic together (RLlib's multi-agent path):
    SePS copies its slices with the recurrent cell's, SNP-PS masks the recurrent units, FuPS+id
    widens the input; after the install every EnvRunner holds the Learner's module."""
    model = {"use_lstm": True, "lstm_cell_size": 8, "max_seq_len": 5, "critic_input": "joint_observations"}
    options = dict(shared_training_env_steps=200, identity_env_steps=200, num_clusters=2, **QUICK_FIT) if method == "seps" else {}
    algo = rllib_adaps.configure_sharing(small("spread_continuous", model, num_env_runners=1), method, **options).build_algo()
    try:
        results = [algo.train() for _ in range(2)]
        assert np.isfinite(results[-1]["env_runners"]["episode_return_mean"])
        if method == "seps":
            assert results[-1][RESULT_KEY]["done"]
        learner = learner_views(algo)[0]
        for view in runner_views(algo):
            assert_same_module(learner, view)
    finally:
        algo.stop()


@pytest.mark.parametrize("fast_path", [None, False])
def test_identities_are_fitted_from_continuous_actions(ray_local, fast_path):
    """BPS with continuous actions: the VAE reads the action vectors, and K and the types are
    found from the initial policy's transitions, on both paths."""
    config = (PPOConfig().environment("bps", env_config={"agents_per_type": [3, 3, 3], "continuous_actions": True})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=4)
              .training(train_batch_size_per_learner=400, minibatch_size=200, num_epochs=1))
    algo = rllib_adaps.configure_sharing(config, "adaps", identity_env_steps=3000, fast_path=fast_path).build_algo()
    try:
        fit = algo.train()[RESULT_KEY]
        assert fit["num_clusters"] == 3 and fit["adjusted_rand_index"] == 1.0
    finally:
        algo.stop()
