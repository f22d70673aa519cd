"""Batched envs: C copies stepped at once equal C single envs, on every path that uses them."""

from __future__ import annotations

import numpy as np
import pytest

from rllib_adaps.envs import make_parallel_env
from rllib_adaps.envs.batched import BatchedParallelEnv
from rllib_adaps.rllib.fast_path import ParallelEnvCopies, SlotVectorEnv

BATCHED_ENVS = [
    ("bps", {"preset": "v1", "max_steps": 7}),
    ("bps", {"preset": "v6", "max_steps": 5}),
    ("lbf", {"levels": [1, 1, 2, 2, 3], "grid_size": 6, "foods": 2, "max_steps": 9}),
    ("lbf", {"levels": [1, 2, 3, 1], "grid_size": 8, "foods": 3, "sight": 2, "max_steps": 6}),
    ("crware", {"task": "tiny-4ag", "max_steps": 8}),
    ("crware", {"size": "small", "n_agents": 6, "n_colours": 3, "max_steps": 6}),
]


def stacked(observations: dict, agents: list[str]) -> np.ndarray:
    return np.stack([observations[agent] for agent in agents])


@pytest.mark.parametrize(("name", "env_config"), BATCHED_ENVS)
def test_batch_equals_single_envs_with_inactive_copies(name, env_config):
    """Copy c seeded s + c replays single env c, also when some copies sit out some steps."""
    num_copies, seed = 4, 10
    single = [make_parallel_env(name, env_config) for _ in range(num_copies)]
    assert isinstance(single[0], BatchedParallelEnv)
    batch = single[0].make_batched(num_copies)
    agents = single[0].possible_agents
    num_actions = single[0].action_space(agents[0]).n
    batch.reset_copies(np.arange(num_copies), [seed + c for c in range(num_copies)])
    for c, env in enumerate(single):
        observations, _ = env.reset(seed=seed + c)
        np.testing.assert_array_equal(batch.observations()[c], stacked(observations, agents))
    rng = np.random.default_rng(0)
    for step in range(40):
        actions = rng.integers(0, num_actions, size=(num_copies, len(agents)))
        active = rng.random(num_copies) < 0.7
        rewards, terminated, truncated = batch.step_copies(actions, active)
        restart = []
        for c, env in enumerate(single):
            if not active[c]:
                assert not terminated[c] and not truncated[c] and not rewards[c].any()
                continue
            observations, rewards_c, term_c, trunc_c, _ = env.step(dict(zip(agents, actions[c].tolist())))
            np.testing.assert_array_equal(batch.observations()[c], stacked(observations, agents))
            np.testing.assert_array_equal(rewards[c], [rewards_c[a] for a in agents])
            assert terminated[c] == term_c[agents[0]] and truncated[c] == trunc_c[agents[0]]
            if terminated[c] or truncated[c]:
                restart.append(c)
        if restart:  # seedless resets go on with each copy's generator
            batch.reset_copies(np.asarray(restart), [None] * len(restart))
            for c in restart:
                observations, _ = single[c].reset()
                np.testing.assert_array_equal(batch.observations()[c], stacked(observations, agents))


@pytest.mark.parametrize(("name", "env_config"), BATCHED_ENVS + [("roles", {})])
def test_slot_vector_env_same_on_batched_and_per_copy_route(name, env_config):
    """The fast path's vector env gives the same slots whether the env steps its copies at once."""
    num_copies = 3
    per_copy = SlotVectorEnv(ParallelEnvCopies([make_parallel_env(name, env_config) for _ in range(num_copies)]))
    first = make_parallel_env(name, env_config)
    batched = SlotVectorEnv(first.make_batched(num_copies) if isinstance(first, BatchedParallelEnv) else [
        make_parallel_env(name, env_config) for _ in range(num_copies)])
    for left, right in zip(per_copy.reset(seed=3), batched.reset(seed=3)):
        np.testing.assert_equal(left, right)
    for _ in range(30):
        actions = per_copy.action_space.sample()
        for left, right in zip(per_copy.step(actions), batched.step(actions)):
            np.testing.assert_equal(left, right)
    per_copy.close()
    batched.close()


def test_slot_vector_env_in_another_agent_order():
    """Slots follow the module's agent order, whichever order the batched env keeps its rows in."""
    env_config = {"preset": "v1", "max_steps": 4}
    agents = make_parallel_env("bps", env_config).possible_agents
    order = agents[::-1]
    per_copy = SlotVectorEnv([make_parallel_env("bps", env_config) for _ in range(2)], order)
    batched = SlotVectorEnv(make_parallel_env("bps", env_config).make_batched(2), order)
    for left, right in zip(per_copy.reset(seed=1), batched.reset(seed=1)):
        np.testing.assert_equal(left, right)
    assert batched.true_agent_types == per_copy.true_agent_types
    for _ in range(10):
        actions = per_copy.action_space.sample()
        for left, right in zip(per_copy.step(actions), batched.step(actions)):
            np.testing.assert_equal(left, right)


def test_observations_returned_are_not_overwritten_by_the_next_step():
    env = make_parallel_env("bps", {"preset": "v1"})
    observations, _ = env.reset(seed=0)
    kept = {agent: value.copy() for agent, value in observations.items()}
    env.step(dict.fromkeys(env.agents, 2))
    for agent, value in observations.items():
        np.testing.assert_array_equal(value, kept[agent])
