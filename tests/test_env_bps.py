"""Blind-particle Spread: API conformance (PettingZoo, RLlib) and the env's semantics."""

from __future__ import annotations

import numpy as np
import pytest
from pettingzoo.test import parallel_api_test

from rllib_adaps.envs.base import EnvConfigError
from rllib_adaps.envs.bps import PRESETS, BlindParticleSpread
from rllib_adaps.envs.rllib_env import OrderedParallelEnv

ALL_PRESETS = sorted(PRESETS)
CUSTOM_GROUPS = [2, 1, 4]


def random_actions(env: BlindParticleSpread, rng: np.random.Generator) -> dict[str, int]:
    actions = rng.integers(0, 5, size=len(env.agents)).tolist()
    return dict(zip(env.agents, actions))


def plain_observations(env: BlindParticleSpread) -> np.ndarray:
    """The unshuffled observations rebuilt from the env state: vel, pos, landmark - pos."""
    offsets = env.landmark_positions[None, :, :] - env.agent_positions[:, None, :]
    return np.concatenate(
        [env.agent_velocities, env.agent_positions, offsets.reshape(len(offsets), -1)], axis=1
    ).astype(np.float32)


def stacked(observations: dict[str, np.ndarray], env: BlindParticleSpread) -> np.ndarray:
    return np.stack([observations[agent] for agent in env.possible_agents])


# --- API conformance ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "env_config",
    [{"preset": preset} for preset in ALL_PRESETS]
    + [{"agents_per_type": CUSTOM_GROUPS}, {"agents_per_type": CUSTOM_GROUPS, "shuffle_obs": True}],
)
def test_pettingzoo_parallel_api(env_config):
    parallel_api_test(BlindParticleSpread.from_config(env_config), num_cycles=100)


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_rllib_multiagent_env_check(preset):
    from ray.rllib.utils.pre_checks.env import check_multiagent_environments

    wrapped = OrderedParallelEnv(BlindParticleSpread.from_config({"preset": preset}))
    # Without the base-class attributes the check would only warn and return.
    assert hasattr(wrapped, "_agent_ids")
    check_multiagent_environments(wrapped)


def test_rllib_wrapper_ends_episode_with_all_truncated():
    env = BlindParticleSpread(preset="v1", max_steps=4)
    wrapped = OrderedParallelEnv(env)
    wrapped.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(3):
        _, _, terminateds, truncateds, _ = wrapped.step(random_actions(env, rng))
        assert not truncateds["__all__"] and not terminateds["__all__"]
    _, _, terminateds, truncateds, _ = wrapped.step(random_actions(env, rng))
    assert truncateds["__all__"] and not terminateds["__all__"]
    assert wrapped.agents == []


@pytest.mark.parametrize("preset", ALL_PRESETS)
def test_spaces_are_stable_and_sized_by_landmarks(preset):
    env = BlindParticleSpread.from_config({"preset": preset})
    groups, shuffled = PRESETS[preset]
    num_landmarks = len(groups)
    assert env.num_landmarks == num_landmarks
    assert env.shuffle_obs is shuffled
    assert len(env.possible_agents) == sum(groups)
    observations, _ = env.reset(seed=0)
    for agent in env.possible_agents:
        space = env.observation_space(agent)
        assert space is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert space.shape == (4 + 2 * num_landmarks,)
        assert space.dtype == np.float32
        assert env.action_space(agent).n == 5
        assert observations[agent].dtype == np.float32
        assert space.contains(observations[agent])


@pytest.mark.parametrize(
    ("env_config", "expected_types"),
    [
        ({"preset": "v1"}, [0] * 5 + [1] * 5 + [2] * 5),
        ({"preset": "v3"}, [t for t in range(5) for _ in range(6)]),
        ({"preset": "v4"}, [0] * 3 + [1] * 3 + [2] * 3 + [3] * 12 + [4] * 9),
        ({"agents_per_type": CUSTOM_GROUPS}, [0, 0, 1, 2, 2, 2, 2]),
    ],
)
def test_types_are_contiguous_blocks(env_config, expected_types):
    env = BlindParticleSpread.from_config(env_config)
    assert env.possible_agents == [f"agent_{i}" for i in range(len(expected_types))]
    assert [env.true_agent_types[agent] for agent in env.possible_agents] == expected_types


def test_defaults():
    env = BlindParticleSpread.from_config({})
    assert env.preset == "v2"
    assert env.agents_per_type == (10, 10, 10)
    assert not env.shuffle_obs
    assert env.max_steps == 50
    assert env.reward_scale == 0.5
    assert env.metadata["name"] == "blind_particle_spread_v0"
    custom = BlindParticleSpread(agents_per_type=[3, 3])
    assert not custom.shuffle_obs and custom.obs_permutations is None


# --- semantics -----------------------------------------------------------------------------


def test_reset_spawns_in_ranges_with_zero_velocity():
    env = BlindParticleSpread(preset="v3")
    landmark_coordinates = []
    for seed in range(20):
        env.reset(seed=seed)
        assert np.all(np.abs(env.agent_positions) <= 1.0)
        assert np.all(np.abs(env.landmark_positions) <= 3.0)
        assert np.all(env.agent_velocities == 0.0)
        landmark_coordinates.append(env.landmark_positions.ravel())
    # Landmarks really use the wider [-3, 3] range, not the agents' [-1, 1].
    assert np.abs(np.concatenate(landmark_coordinates)).max() > 2.0


@pytest.mark.parametrize("env_config", [{"preset": "v1"}, {"preset": "v4", "reward_scale": 2.0}])
def test_reward_is_scaled_distance_to_own_type_landmark(env_config):
    env = BlindParticleSpread.from_config(env_config)
    env.reset(seed=3)
    rng = np.random.default_rng(0)
    for _ in range(5):
        _, rewards, _, _, _ = env.step(random_actions(env, rng))
        for index, agent in enumerate(env.possible_agents):
            own_landmark = env.landmark_positions[env.true_agent_types[agent]]
            distance = np.linalg.norm(own_landmark - env.agent_positions[index])
            assert isinstance(rewards[agent], float)
            assert rewards[agent] == pytest.approx(-env.reward_scale * distance, rel=1e-9)


@pytest.mark.parametrize("preset", ["v1", "v2", "v3", "v4"])
def test_unshuffled_observation_layout(preset):
    env = BlindParticleSpread(preset=preset)
    observations, _ = env.reset(seed=1)
    np.testing.assert_allclose(stacked(observations, env), plain_observations(env), rtol=1e-6)
    rng = np.random.default_rng(1)
    for _ in range(3):
        observations, *_ = env.step(random_actions(env, rng))
        np.testing.assert_allclose(stacked(observations, env), plain_observations(env), rtol=1e-6)
    # Velocity has become non-zero, so the first two slots are really the velocity.
    assert np.any(env.agent_velocities != 0.0)


@pytest.mark.parametrize("preset", ["v5", "v6"])
def test_shuffled_observation_uses_one_fixed_permutation_per_type(preset):
    env = BlindParticleSpread(preset=preset)
    twin = BlindParticleSpread.from_config({"preset": preset})
    permutations = env.obs_permutations
    num_types = len(PRESETS[preset][0])
    assert permutations.shape == (num_types, env.obs_dim)
    # A real permutation per type, different between types, identical across two envs.
    for permutation in permutations:
        assert sorted(permutation.tolist()) == list(range(env.obs_dim))
    assert len({tuple(permutation) for permutation in permutations}) == num_types
    np.testing.assert_array_equal(permutations, twin.obs_permutations)

    rng = np.random.default_rng(0)
    for seed in (0, 7, 123):
        observations, _ = env.reset(seed=seed)
        twin_observations, _ = twin.reset(seed=seed)
        for _ in range(2):
            plain = plain_observations(env)
            shuffled = stacked(observations, env)
            for index, agent in enumerate(env.possible_agents):
                permutation = permutations[env.true_agent_types[agent]]
                np.testing.assert_allclose(shuffled[index], plain[index][permutation], rtol=1e-6)
            np.testing.assert_array_equal(shuffled, stacked(twin_observations, twin))
            actions = random_actions(env, rng)
            observations, *_ = env.step(actions)
            twin_observations, *_ = twin.step(actions)
    np.testing.assert_array_equal(env.obs_permutations, permutations)


def test_permutation_seed_changes_permutations():
    default = BlindParticleSpread(preset="v6")
    other = BlindParticleSpread(preset="v6", permutation_seed=1)
    assert not np.array_equal(default.obs_permutations, other.obs_permutations)


def test_one_step_follows_mpe_physics():
    env = BlindParticleSpread(preset="v1")
    env.reset(seed=5)
    rng = np.random.default_rng(2)
    for _ in range(3):  # get non-zero velocities first, so damping is exercised
        env.step(random_actions(env, rng))
    velocities, positions = env.agent_velocities.copy(), env.agent_positions.copy()
    landmarks = env.landmark_positions.copy()
    action_list = [index % 5 for index in range(len(env.agents))]
    env.step(dict(zip(env.agents, action_list)))

    unit_directions = {0: (0, 0), 1: (-1, 0), 2: (1, 0), 3: (0, -1), 4: (0, 1)}
    forces = 5.0 * np.array([unit_directions[action] for action in action_list], dtype=float)
    expected_velocities = velocities * (1 - 0.25) + forces / 1.0 * 0.1
    expected_positions = positions + expected_velocities * 0.1
    np.testing.assert_allclose(env.agent_velocities, expected_velocities, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(env.agent_positions, expected_positions, rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(env.landmark_positions, landmarks)


def test_truncation_at_max_steps():
    env = BlindParticleSpread(preset="v5", max_steps=3)
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    for _ in range(2):
        _, _, terminations, truncations, _ = env.step(random_actions(env, rng))
        assert not any(terminations.values()) and not any(truncations.values())
        assert env.agents == env.possible_agents
    observations, rewards, terminations, truncations, infos = env.step(random_actions(env, rng))
    for results in (observations, rewards, terminations, truncations, infos):
        assert list(results) == env.possible_agents
    assert all(truncations.values()) and not any(terminations.values())
    assert env.agents == []
    with pytest.raises(RuntimeError, match="reset"):
        env.step({})
    env.reset()
    assert env.agents == env.possible_agents


def test_default_episode_is_fifty_steps():
    env = BlindParticleSpread(preset="v1")
    env.reset(seed=0)
    rng = np.random.default_rng(0)
    steps = 0
    while env.agents:
        env.step(random_actions(env, rng))
        steps += 1
    assert steps == 50


def rollout(env: BlindParticleSpread, seed: int, num_steps: int = 20):
    observations, _ = env.reset(seed=seed)
    trajectory = [stacked(observations, env)]
    rng = np.random.default_rng(42)  # same actions for every rollout
    for _ in range(num_steps):
        observations, rewards, *_ = env.step(random_actions(env, rng))
        trajectory.append(stacked(observations, env))
        trajectory.append(np.array(list(rewards.values())))
    return trajectory


@pytest.mark.parametrize("preset", ["v2", "v6"])
def test_same_seed_same_trajectory_different_seed_differs(preset):
    env = BlindParticleSpread(preset=preset)
    first = rollout(env, seed=11)
    np.random.seed(999)  # the global generator must play no part
    second = rollout(BlindParticleSpread(preset=preset), seed=11)
    for left, right in zip(first, second):
        np.testing.assert_array_equal(left, right)
    again_on_same_env = rollout(env, seed=11)
    for left, right in zip(first, again_on_same_env):
        np.testing.assert_array_equal(left, right)
    different = rollout(env, seed=12)
    assert not np.array_equal(first[0], different[0])


def test_bad_actions_are_rejected():
    env = BlindParticleSpread(preset="v1")
    env.reset(seed=0)
    actions = dict.fromkeys(env.agents, 0)
    with pytest.raises(ValueError, match=r"action of agent_3 must be in \[0, 4\]"):
        env.step({**actions, "agent_3": 5})
    with pytest.raises(ValueError, match=r"action of agent_3 must be in \[0, 4\]"):
        env.step({**actions, "agent_3": -1})
    del actions["agent_4"]
    with pytest.raises(ValueError, match="agent_4"):
        env.step(actions)


# --- env_config validation -----------------------------------------------------------------


@pytest.mark.parametrize(
    ("env_config", "named"),
    [
        ({"presets": "v2"}, ["presets", "'preset'"]),
        ({"max_step": 10}, ["max_step", "'max_steps'"]),
        ({"preset": "v9"}, ["preset", "v9"]),
        ({"preset": "v1", "agents_per_type": [2, 2]}, ["preset", "agents_per_type"]),
        ({"agents_per_type": []}, ["agents_per_type"]),
        ({"agents_per_type": [3, 0]}, ["agents_per_type", ">= 1"]),
        ({"agents_per_type": [3, -2]}, ["agents_per_type", ">= 1"]),
        ({"agents_per_type": 5}, ["agents_per_type"]),
        ({"agents_per_type": [2.5]}, ["agents_per_type"]),
        ({"max_steps": 0}, ["max_steps", ">= 1"]),
        ({"reward_scale": 0}, ["reward_scale", "> 0"]),
        ({"reward_scale": -1.0}, ["reward_scale", "> 0"]),
        ({"shuffle_obs": "yes"}, ["shuffle_obs"]),
        ({"permutation_seed": -1}, ["permutation_seed"]),
    ],
)
def test_bad_env_config_names_the_key(env_config, named):
    with pytest.raises(EnvConfigError) as error:
        BlindParticleSpread.from_config(env_config)
    for text in named:
        assert text in str(error.value)


def test_constructor_arguments_match_env_config():
    from_args = BlindParticleSpread(
        agents_per_type=(2, 3), shuffle_obs=True, max_steps=7, reward_scale=1.5
    )
    from_config = BlindParticleSpread.from_config(
        {"agents_per_type": [2, 3], "shuffle_obs": True, "max_steps": 7, "reward_scale": 1.5}
    )
    for env in (from_args, from_config):
        assert env.agents_per_type == (2, 3)
        assert env.shuffle_obs and env.max_steps == 7 and env.reward_scale == 1.5
    np.testing.assert_array_equal(from_args.obs_permutations, from_config.obs_permutations)
    with pytest.raises(EnvConfigError, match="max_steps"):
        BlindParticleSpread(max_steps=0)


def test_continuous_forces_move_agents_as_the_discrete_moves_do():
    """``continuous_actions``: a unit force along an axis is MPE's discrete move along it; the
    PettingZoo API holds, forces are clipped to [-1, 1], and a bad action is a clear error."""
    discrete, continuous = BlindParticleSpread(preset="v1"), BlindParticleSpread(preset="v1", continuous_actions=True)
    parallel_api_test(BlindParticleSpread(preset="v1", continuous_actions=True), num_cycles=5)
    discrete.reset(seed=4)
    continuous.reset(seed=4)
    forces = {0: [0, 0], 1: [-1, 0], 2: [3, 0], 3: [0, -1], 4: [0, 1]}  # 3 is clipped to 1
    for step in range(6):
        moves = {a: (i + step) % 5 for i, a in enumerate(discrete.possible_agents)}
        obs_d, rew_d, *_ = discrete.step(moves)
        obs_c, rew_c, *_ = continuous.step({a: np.array(forces[m], np.float32) for a, m in moves.items()})
        for agent in discrete.possible_agents:
            np.testing.assert_allclose(obs_c[agent], obs_d[agent], rtol=1e-6)
            assert rew_c[agent] == pytest.approx(rew_d[agent])
    with pytest.raises(ValueError, match="finite arrays of shape \\(2,\\)"):
        continuous.step({a: np.array([np.nan, 0.0]) for a in continuous.possible_agents})
