"""Identity pre-training on synthetic transitions: types that differ only in reward, or only
in dynamics, must be recovered exactly, and Davies-Bouldin must find the true K."""

import numpy as np
import pytest
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.identity import cluster_identities, fit_identities

NUM_ACTIONS = 5


def synthetic_transitions(types, differ_in, steps_per_agent=400, seed=0):
    """Random-walk transitions; each type has its own goal (reward) or its own step size."""
    rng = np.random.default_rng(seed)
    types = np.asarray(types)
    n = len(types)
    agent_index = np.repeat(np.arange(n), steps_per_agent)
    obs = rng.uniform(-1, 1, size=(len(agent_index), 4)).astype(np.float32)
    actions = rng.integers(0, NUM_ACTIONS, size=len(agent_index))
    moves = np.array([[0, 0], [-1, 0], [1, 0], [0, -1], [0, 1]], np.float32)
    step_size = np.full(len(types), 0.1)
    goals = np.zeros((len(types), 2))
    if differ_in == "reward":
        goals = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0], [1.0, 1.0]])[types]
    else:
        step_size = np.array([0.05, 0.2, 0.4, 0.6])[types]
    next_obs = obs.copy()
    next_obs[:, :2] += moves[actions] * step_size[agent_index, None]
    rewards = -np.linalg.norm(next_obs[:, :2] - goals[agent_index], axis=1)
    return agent_index, obs, actions, next_obs, rewards


@pytest.mark.parametrize("differ_in, reconstruct", [("reward", ("reward",)), ("reward", ("next_obs", "reward")), ("dynamics", ("next_obs",))])
def test_types_recovered_with_given_k(differ_in, reconstruct):
    types = [0, 0, 0, 1, 1, 1, 2, 2, 2]
    data = synthetic_transitions(types, differ_in)
    result = fit_identities(*data, num_agents=9, num_actions=NUM_ACTIONS, num_clusters=3, reconstruct=reconstruct)
    assert adjusted_rand_score(types, result.labels) == 1.0
    assert result.identities.shape == (9, 10)
    assert result.centres.shape == (3, 10)
    assert result.cluster_sizes() == [3, 3, 3]


@pytest.mark.parametrize(
    "types, differ_in",
    [
        ([0, 0, 1, 1, 2, 2, 3, 3], "reward"),
        ([0, 0, 0, 1, 1, 1, 2, 2, 2, 3, 3, 3], "reward"),
        ([0, 0, 0, 0, 1, 1, 1, 1, 1, 2, 2, 2], "reward"),
        ([0, 0, 0, 1, 1, 1, 2, 2, 2], "dynamics"),
    ],
)
def test_davies_bouldin_finds_true_k(types, differ_in):
    data = synthetic_transitions(types, differ_in, seed=1)
    result = fit_identities(*data, num_agents=len(types), num_actions=NUM_ACTIONS, num_clusters=None)
    assert result.num_clusters == len(set(types))
    assert adjusted_rand_score(types, result.labels) == 1.0
    assert set(result.davies_bouldin) == set(range(2, len(types)))


def test_same_seed_same_result_and_labels_canonical():
    types = [1, 1, 0, 0, 2, 2]
    data = synthetic_transitions(types, "reward")
    a = fit_identities(*data, num_agents=6, num_actions=NUM_ACTIONS, num_clusters=3, seed=3)
    b = fit_identities(*data, num_agents=6, num_actions=NUM_ACTIONS, num_clusters=3, seed=3)
    np.testing.assert_array_equal(a.identities, b.identities)
    assert a.labels.tolist() == [0, 0, 1, 1, 2, 2]  # numbered by first agent


def test_bad_input_is_rejected():
    data = synthetic_transitions([0, 1, 2], "reward")
    with pytest.raises(ValueError, match="z_dim"):
        fit_identities(*data, num_agents=3, num_actions=NUM_ACTIONS, z_dim=0)
    with pytest.raises(ValueError, match="missing \\[3\\]"):
        fit_identities(*data, num_agents=4, num_actions=NUM_ACTIONS, num_clusters=2)
    with pytest.raises(ValueError, match="reconstruct"):
        fit_identities(*data, num_agents=3, num_actions=NUM_ACTIONS, reconstruct=("state",))
    with pytest.raises(ValueError, match="num_clusters"):
        cluster_identities(np.zeros((3, 2)), num_clusters=4)
    with pytest.raises(ValueError, match="at least 3 agents"):
        cluster_identities(np.zeros((2, 2)), num_clusters=None)


@pytest.mark.parametrize("preset, true_k", [("v2", 3), ("v6", 5)])
def test_real_bps_types_recovered_from_random_policy_transitions(preset, true_k):
    """Types differ only in reward (v2) or also in observation layout (v6); K chosen by Davies-Bouldin."""
    from rllib_adaps.envs import make_parallel_env

    env = make_parallel_env("bps", {"preset": preset})
    agents = env.possible_agents
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    rows = []
    while len(rows) * len(agents) < 30_000:
        actions = {a: int(rng.integers(5)) for a in agents}
        nxt, rew, _, trunc, _ = env.step(actions)
        rows.append([np.arange(len(agents)), np.stack([obs[a] for a in agents]), np.array([actions[a] for a in agents]),
                     np.stack([nxt[a] for a in agents]), np.array([rew[a] for a in agents])])
        obs = env.reset()[0] if any(trunc.values()) else nxt
    data = [np.concatenate([r[i] for r in rows]) for i in range(5)]
    result = fit_identities(*data, num_agents=len(agents), num_actions=5)
    truth = [env.true_agent_types[a] for a in agents]
    assert result.num_clusters == true_k
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_identity_leak_features_are_the_per_agent_constants():
    """A column constant within each agent but different between agents is a leak; a column
    constant for everyone, or varying within an agent, is not."""
    from rllib_adaps.identity import identity_leak_features

    rng = np.random.default_rng(0)
    agent_index = np.repeat(np.arange(4), 50)
    obs = np.stack([agent_index % 2, np.ones(200), rng.normal(size=200)], axis=1).astype(np.float32)
    next_obs = obs + np.array([0.0, 0.0, 0.1], np.float32)
    assert identity_leak_features(agent_index, obs, next_obs).tolist() == [True, False, False]


def test_real_lbf_levels_recovered_once_the_own_level_is_left_out():
    """LBF agents see their own level, so a decoder that reads it needs no identity vector:
    dropping that per-agent constant lets the VAE recover the levels (true K given)."""
    from rllib_adaps.envs import make_parallel_env

    env = make_parallel_env("lbf", {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50})
    agents = env.possible_agents
    rng = np.random.default_rng(0)
    obs, _ = env.reset(seed=0)
    rows = []
    while len(rows) < 2_000:
        actions = {a: int(rng.integers(env.action_space(a).n)) for a in agents}
        nxt, rew, term, trunc, _ = env.step(actions)
        rows.append([np.arange(len(agents)), np.stack([obs[a] for a in agents]), np.array([actions[a] for a in agents]),
                     np.stack([nxt[a] for a in agents]), np.array([rew[a] for a in agents])])
        obs = env.reset()[0] if any(trunc.values()) or all(term.values()) else nxt
    data = [np.concatenate([r[i] for r in rows]) for i in range(5)]
    truth = [env.true_agent_types[a] for a in agents]
    kept = fit_identities(*data, num_agents=6, num_actions=6, num_clusters=3)
    assert kept.dropped_features >= 1
    assert adjusted_rand_score(truth, kept.labels) == 1.0
