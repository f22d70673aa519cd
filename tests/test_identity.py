"""Identity pre-training on synthetic and real transitions: types that differ only in reward,
or only in dynamics, must be recovered exactly with K chosen automatically, including a type
held by one agent; padding must not tell agents apart; agents with too few transitions are named."""

import logging

import numpy as np
import pytest
import torch
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.core.clustering import cluster_identities, select_num_clusters
from rllib_adaps.core.identity import VAEOptions, fit_identities, space_groups, transitions_per_agent

NUM_ACTIONS = 5


@pytest.fixture(autouse=True)
def one_torch_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def env_transitions(name, env_config, env_steps, seed=0):
    """Uniformly random transitions of a registered env, observations zero-padded on the right."""
    from rllib_adaps.envs import make_parallel_env

    env = make_parallel_env(name, env_config)
    agents = env.possible_agents
    obs_sizes = np.array([env.observation_space(a).shape[0] for a in agents])
    action_sizes = np.array([env.action_space(a).n for a in agents])
    rng = np.random.default_rng(seed)

    def pad(observations):
        rows = np.zeros((len(agents), obs_sizes.max()), np.float32)
        for i, a in enumerate(agents):
            rows[i, : obs_sizes[i]] = observations[a]
        return rows

    obs, _ = env.reset(seed=seed)
    rows = []
    for _ in range(env_steps):
        actions = (rng.random(len(agents)) * action_sizes).astype(int)
        nxt, rew, term, trunc, _ = env.step(dict(zip(agents, actions.tolist())))
        rows.append([np.arange(len(agents)), pad(obs), actions, pad(nxt), np.array([rew[a] for a in agents])])
        obs = env.reset()[0] if any(trunc.values()) or all(term.values()) else nxt
    data = [np.concatenate([r[i] for r in rows]) for i in range(5)]
    truth = [env.true_agent_types[a] for a in agents]
    return data, truth, obs_sizes, action_sizes


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
    result = fit_identities(*data, num_agents=9, num_actions=NUM_ACTIONS, num_clusters=3, vae=VAEOptions(reconstruct=reconstruct))
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
        ([0, 1, 1, 1, 1, 2, 2, 2], "reward"),  # a role held by one agent
        ([0, 0, 0, 0, 1, 1, 1, 1, 2, 3, 3, 3], "dynamics"),
    ],
)
def test_automatic_k_finds_true_k(types, differ_in):
    data = synthetic_transitions(types, differ_in, seed=1)
    result = fit_identities(*data, num_agents=len(types), num_actions=NUM_ACTIONS, num_clusters=None)
    assert result.num_clusters == len(set(types))
    assert adjusted_rand_score(types, result.labels) == 1.0
    selection = result.k_selection
    assert set(selection) == {"criterion", "scores", "excluded", "chosen"}
    assert selection["criterion"] == "silhouette" and selection["chosen"] == result.num_clusters
    assert set(selection["scores"]) == {str(k) for k in range(2, len(types))}
    assert set(selection["excluded"]) == {"1", str(len(types))}
    assert all(isinstance(v, float) for v in selection["scores"].values())


def test_same_type_scatter_does_not_drift_to_many_clusters():
    """Three tight types, each agent slightly off its type's centre: K stays 3 (the plain
    Davies-Bouldin index keeps falling as agents are split off)."""
    rng = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [3.0, 0.0], [0.0, 3.0]])
    types = np.repeat([0, 1, 2], 5)
    identities = centres[types] + rng.normal(scale=0.3, size=(15, 2))
    assert select_num_clusters(identities)["chosen"] == 3
    lone = np.vstack([identities, [[6.0, 6.0]]])  # one agent of its own type
    assert select_num_clusters(lone)["chosen"] == 4


def test_bench_k_criteria_report_their_scores_and_plug_into_clustering():
    """The alternatives measured in bench/identity_recovery.py --criteria keep the library's record
    and are passed to the clustering as its K selector."""
    import sys
    from pathlib import Path

    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "bench"))
    try:
        from k_criteria import K_CRITERIA
    finally:
        sys.path.pop(0)
    rng = np.random.default_rng(0)
    identities = np.repeat(np.eye(3) * 4, 4, axis=0) + rng.normal(scale=0.2, size=(12, 3))
    for criterion, select in K_CRITERIA.items():
        clustering = cluster_identities(identities, None, 0, select=select)
        selection = clustering.selection
        assert selection["criterion"] == criterion and selection["chosen"] == clustering.num_clusters, criterion
        assert criterion != "silhouette" or clustering.num_clusters == 3  # the library's rule finds the 3 types
        assert all(str(k) in selection["scores"] or str(k) in selection["excluded"] for k in range(1, 13))


def test_same_seed_same_result_and_labels_canonical():
    types = [1, 1, 0, 0, 2, 2]
    data = synthetic_transitions(types, "reward")
    quick = dict(num_agents=6, num_actions=NUM_ACTIONS, num_clusters=3, seed=3, vae=VAEOptions(min_updates=500))  # recovery: tests above
    a = fit_identities(*data, **quick)
    b = fit_identities(*data, **quick)
    np.testing.assert_array_equal(a.identities, b.identities)
    assert a.labels.tolist() == [0, 0, 1, 1, 2, 2]  # numbered by first agent


def test_bad_input_is_rejected():
    data = synthetic_transitions([0, 1, 2], "reward")
    with pytest.raises(ValueError, match="z_dim"):
        VAEOptions(z_dim=0)
    with pytest.raises(TypeError, match="VAEOptions"):
        fit_identities(*data, num_agents=3, num_actions=NUM_ACTIONS, vae={"z_dim": 4})
    with pytest.raises(ValueError, match="agents \\[3\\] have \\[0\\].*missing \\[3\\]"):
        fit_identities(*data, num_agents=4, num_actions=NUM_ACTIONS, num_clusters=2)
    with pytest.raises(ValueError, match="outside 0..1"):
        fit_identities(*data, num_agents=2, num_actions=NUM_ACTIONS, num_clusters=2)
    with pytest.raises(ValueError, match="obs_sizes"):
        fit_identities(*data, num_agents=3, num_actions=NUM_ACTIONS, obs_sizes=[4, 4])
    with pytest.raises(ValueError, match="actions must lie"):
        fit_identities(*data, num_agents=3, num_actions=NUM_ACTIONS, action_sizes=[2, 2, 2])
    with pytest.raises(ValueError, match="reconstruct"):
        VAEOptions(reconstruct=("state",))
    with pytest.raises(ValueError, match="num_clusters"):
        cluster_identities(np.zeros((3, 2)), num_clusters=4)
    with pytest.raises(ValueError, match="at least 3 agents"):
        cluster_identities(np.zeros((2, 2)), num_clusters=None)


def test_transitions_per_agent_and_the_agents_with_too_few_are_named():
    assert transitions_per_agent(np.array([0, 2, 2, 0, 2]), 4).tolist() == [2, 0, 3, 0]
    with pytest.raises(ValueError, match="outside 0..3"):
        transitions_per_agent(np.array([0, 4]), 4)
    types = [0, 0, 1, 1]
    agent_index, obs, actions, next_obs, rewards = synthetic_transitions(types, "reward", steps_per_agent=120)
    keep = (agent_index != 1) | (np.arange(len(agent_index)) % 2 == 0)  # agent 1 keeps 60
    data = [agent_index[keep], obs[keep], actions[keep], next_obs[keep], rewards[keep]]
    with pytest.raises(ValueError, match="agents \\[1\\] have \\[60\\] \\(at least 100"):
        fit_identities(*data, num_agents=4, num_actions=NUM_ACTIONS, num_clusters=2)
    result = fit_identities(*data, num_agents=4, num_actions=NUM_ACTIONS, num_clusters=2, min_transitions_per_agent=50,
                            vae=VAEOptions(min_updates=200))
    assert len(result.labels) == 4


def test_space_groups():
    assert space_groups(4).tolist() == [0, 0, 0, 0]
    assert space_groups(5, [8, 6, 8, 6, 8], [5, 5, 5, 5, 4]).tolist() == [0, 1, 0, 1, 2]


def test_agents_with_different_spaces_never_share_a_cluster():
    """Same reward and dynamics, but agents 3..5 see 2 more (padded) features: the space
    tells them apart even when the identities cannot, and even with K fixed to 1."""
    types = [0, 0, 0, 0, 0, 0]
    agent_index, obs, actions, next_obs, rewards = synthetic_transitions(types, "reward", steps_per_agent=200)
    small = agent_index < 3
    obs = np.concatenate([obs, np.zeros((len(obs), 2), np.float32)], axis=1)
    next_obs = np.concatenate([next_obs, np.zeros((len(obs), 2), np.float32)], axis=1)
    obs[~small, 4:] = np.random.default_rng(0).normal(size=(int((~small).sum()), 2))
    next_obs[~small, 4:] = obs[~small, 4:] * 0.9
    sizes = [4, 4, 4, 6, 6, 6]
    fixed = fit_identities(agent_index, obs, actions, next_obs, rewards, num_agents=6, num_actions=NUM_ACTIONS,
                           num_clusters=1, obs_sizes=sizes, vae=VAEOptions(min_updates=300))
    assert fixed.labels.tolist() == [0, 0, 0, 1, 1, 1] and fixed.num_clusters == 2
    assert fixed.k_selection["chosen"] == 2 and "split by observation/action space" in fixed.k_selection["criterion"]
    assert fixed.space_groups.tolist() == [0, 0, 0, 1, 1, 1]


def test_padding_does_not_stand_in_for_the_identity():
    """Two reward types inside each of two observation sizes: with the padded columns in the
    decoder's input the size alone would explain half the differences; the identities must
    find all four types."""
    types = [0, 0, 1, 1, 2, 2, 3, 3]
    agent_index, obs, actions, next_obs, rewards = synthetic_transitions(types, "reward", seed=2)
    sizes = np.array([4, 4, 4, 4, 3, 3, 3, 3])
    padded = sizes[agent_index] == 3
    obs[padded, 3] = 0.0
    next_obs[padded, 3] = 0.0
    result = fit_identities(agent_index, obs, actions, next_obs, rewards, num_agents=8, num_actions=NUM_ACTIONS,
                            obs_sizes=sizes)
    assert adjusted_rand_score(types, result.labels) == 1.0


def test_role_particles_roles_found_with_automatic_k():
    """The test env: roles differ in observation size, actions, reward and dynamics; the
    leader is alone in its role and shares its spaces with the followers."""
    data, truth, obs_sizes, action_sizes = env_transitions("roles", {}, 1000)
    result = fit_identities(*data, num_agents=8, num_actions=5, obs_sizes=obs_sizes, action_sizes=action_sizes)
    assert result.num_clusters == 3
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_crware_colours_found_with_automatic_k():
    """C-RWARE colours differ in observation layout and action meanings (rewards are rare):
    only the change profile makes the decoder need the identity."""
    data, truth, _, _ = env_transitions("crware", {"task": "tiny-4ag"}, 1000)
    result = fit_identities(*data, num_agents=4, num_actions=5)
    assert result.num_clusters == 2
    assert adjusted_rand_score(truth, result.labels) == 1.0


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
    from rllib_adaps.core.identity import identity_leak_features

    rng = np.random.default_rng(0)
    agent_index = np.repeat(np.arange(4), 50)
    obs = np.stack([agent_index % 2, np.ones(200), rng.normal(size=200)], axis=1).astype(np.float32)
    next_obs = obs + np.array([0.0, 0.0, 0.1], np.float32)
    assert identity_leak_features(agent_index, obs, next_obs).tolist() == [True, False, False]


def test_an_agent_id_in_the_observation_is_flagged_and_can_be_dropped(caplog):
    """An id differs for every agent: reconstructed, it would make every agent its own type, so
    a warning names identity_leaks='drop', which leaves it out of the VAE's data entirely."""
    rng = np.random.default_rng(0)
    agent_index = np.repeat(np.arange(4), 100)
    obs = np.concatenate([np.eye(4)[agent_index], rng.normal(size=(400, 2))], axis=1).astype(np.float32)
    data = (agent_index, obs, rng.integers(0, 2, 400), obs + rng.normal(size=obs.shape).astype(np.float32) * [0, 0, 0, 0, 1, 1],
            rng.normal(size=400))
    quick = dict(num_agents=4, num_actions=2, num_clusters=2)
    vae = dict(min_updates=10, epochs=1)
    package_logger = logging.getLogger("rllib_adaps")  # does not propagate once the rllib command set it up
    package_logger.addHandler(caplog.handler)
    try:
        result = fit_identities(*data, vae=VAEOptions(**vae), **quick)
        assert result.identity_leaks == 4 and "'identity_leaks': 'drop'" in caplog.text
        caplog.clear()
        fit_identities(*data, vae=VAEOptions(identity_leaks="drop", **vae), **quick)
        assert "identity_leaks" not in caplog.text
    finally:
        package_logger.removeHandler(caplog.handler)
    with pytest.raises(ValueError, match="identity_leaks must be one of"):
        VAEOptions(identity_leaks="ignore")


# --- agent order ------------------------------------------------------------------------------
@pytest.mark.parametrize("levels", [[1, 1, 2, 2, 3, 3], [1, 2, 3, 1, 2, 3], [3, 1, 2, 2, 1, 3]])
def test_lbf_levels_recovered_in_any_agent_order(levels):
    """LBF shows each agent the others' levels in index order; with the env's declared own
    feature (the agent's own level) only that is reconstructed, so the layout does not matter."""
    from rllib_adaps.envs import make_parallel_env

    env_config = {"levels": levels, "grid_size": 8, "foods": 3}
    data, truth, _, _ = env_transitions("lbf", env_config, 1000)
    own = make_parallel_env("lbf", env_config).own_observation_features
    assert own == (11,)
    result = fit_identities(*data, num_agents=6, num_actions=6, own_features=own)
    assert adjusted_rand_score(truth, result.labels) == 1.0


def test_permuting_agent_indices_permutes_the_partition():
    """The same transitions with the agents listed in another order give the same partition."""
    data, truth, _, _ = env_transitions("bps", {"preset": "v1"}, 1000)
    order = np.random.default_rng(3).permutation(15)  # new index of each agent
    permuted = [order[data[0]], *data[1:]]
    first = fit_identities(*data, num_agents=15, num_actions=5)
    second = fit_identities(*permuted, num_agents=15, num_actions=5)
    assert adjusted_rand_score(first.labels, second.labels[order]) == 1.0
    assert adjusted_rand_score(truth, first.labels) == 1.0
