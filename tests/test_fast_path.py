"""The fast path (``rllib_adaps.rllib.fast_path``): agents as slots of RLlib's single-agent EnvRunner.

What it must keep from the multi-agent path, each checked here:
- the env: the same seeds and actions give the same per-agent observations (same layout as
  ``AgentIndexObservations``: padding, then the agent index), rewards and end flags as the
  ParallelEnv stepped directly, through next-step autoresets; agents keep their own action
  sizes;
- the learner: the same episodes give the same PPO loss through either path's Learner;
- training: the same budgets (env steps) reach returns that cannot be told apart; env steps
  are counted as env steps, ``episode_return_mean`` is the sum over agents;
- identity pre-training, remote EnvRunners and restores: the suite's other end-to-end tests
  run on bps, which takes the fast path by default (see the end of this file);
- the choice of path: a log line, the option that turns it off, and envs whose agents come and
  go or act in turns keep the multi-agent path.
"""

import logging

import numpy as np
import pytest
import scipy.stats
import yaml
from pettingzoo import ParallelEnv
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.connectors.connector_v2 import ConnectorV2
from ray.rllib.env.multi_agent_env_runner import MultiAgentEnvRunner
from ray.rllib.env.single_agent_episode import SingleAgentEpisode
import gymnasium as gym

import rllib_adaps
from rllib_adaps.rllib.connectors import AgentIndexObservations
from rllib_adaps.envs import OrderedParallelEnv, make_parallel_env
from rllib_adaps.rllib.fast_path import (FastPathEnvRunner, FastPathError, SlotVectorEnv, env_episode_returns, slot_env_to_module,
                                   slot_module_to_env)
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID, SHARED_MODULE_ID, sharing_module_id

ENVS = [
    ("bps", {"agents_per_type": [2, 2], "max_steps": 4}),
    ("roles", {"agents_per_role": [1, 2, 2], "max_steps": 3}),  # observation and action sizes differ
    ("lbf", {"levels": [1, 1, 2], "grid_size": 5, "foods": 2, "max_steps": 5}),
]


def in_agent_order(processed: dict, agents) -> np.ndarray:
    return np.stack([processed[a] for a in agents])


@pytest.mark.parametrize("name, env_config", ENVS, ids=[e[0] for e in ENVS])
def test_slots_step_like_the_parallel_env_itself_through_autoresets(name, env_config):
    copies = 2
    slots = SlotVectorEnv([make_parallel_env(name, env_config) for _ in range(copies)])
    direct = [make_parallel_env(name, env_config) for _ in range(copies)]
    agents = list(direct[0].possible_agents)
    n = len(agents)
    layout = AgentIndexObservations(agent_ids=agents, obs_dim=slots.obs_dim)  # the multi-agent path's connector
    sizes = [direct[0].action_space(a).n for a in agents]
    assert slots.num_envs == copies * n and slots.single_action_space.n == max(sizes)
    assert slots.action_space.nvec.tolist() == sizes * copies  # random actions stay within each agent's actions
    assert slots.single_observation_space == layout.recompute_output_observation_space(
        gym.spaces.Dict({a: direct[0].observation_space(a) for a in agents}), None)[agents[0]]

    obs, _ = slots.reset(seed=7)
    for c, env in enumerate(direct):  # copy c is seeded with seed + c, as on RLlib's multi-agent vector env
        np.testing.assert_array_equal(obs[c * n:(c + 1) * n], in_agent_order(layout.preprocess(env.reset(seed=7 + c)[0], None), agents))
    slots.action_space.seed(0)
    restart = [False] * copies
    episodes_ended = 0
    for _ in range(3 * env_config["max_steps"] + 3):
        actions = slots.action_space.sample()
        obs, rewards, terminated, truncated, _ = slots.step(actions)
        for c, env in enumerate(direct):
            rows = slice(c * n, (c + 1) * n)
            if restart[c]:  # next-step autoreset: this step's actions are ignored
                o, _ = env.reset()
                r, te, tr = [0.0] * n, [False] * n, [False] * n
            else:
                o, r, te, tr, _ = env.step(dict(zip(agents, actions[rows])))
                r, te, tr = [r[a] for a in agents], [te[a] for a in agents], [tr[a] for a in agents]
            np.testing.assert_array_equal(obs[rows], in_agent_order(layout.preprocess(o, None), agents))
            np.testing.assert_array_equal(rewards[rows], r)
            np.testing.assert_array_equal(terminated[rows], te)
            np.testing.assert_array_equal(truncated[rows], tr)
            restart[c] = all(np.logical_or(te, tr))
            episodes_ended += restart[c]
    assert episodes_ended >= 2 * copies


class Leaving(ParallelEnv):
    """Three agents; ``agent_1`` leaves after ``leave_at`` steps while the others go on
    (with ``turns``, only one agent observes and acts per step)."""

    metadata = {"name": "leaving_v0"}

    def __init__(self, leave_at=1, turns=False):
        self.possible_agents = [f"agent_{i}" for i in range(3)]
        self.leave_at, self.turns = leave_at, turns

    def observation_space(self, agent):
        return gym.spaces.Box(-1, 1, (2,), np.float32)

    def action_space(self, agent):
        return gym.spaces.Discrete(2)

    def _obs(self):
        agents = self.agents[self.t % 3:][:1] if self.turns else self.agents
        return {a: np.zeros(2, np.float32) for a in agents}

    def reset(self, seed=None, options=None):
        self.agents, self.t = list(self.possible_agents), 0
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions):
        self.t += 1
        done = {a: a == "agent_1" and self.t >= self.leave_at for a in self.agents}
        rewards = {a: 1.0 for a in self.agents}
        obs = self._obs()
        self.agents = [a for a in self.agents if not done[a]]
        return obs, rewards, done, {a: False for a in done}, {a: {} for a in done}


def leaving_config(**env_config):
    return PPOConfig().environment(lambda cfg: OrderedParallelEnv(Leaving(**cfg)), env_config=env_config)


@pytest.fixture
def path_log(caplog):
    logger = logging.getLogger("rllib_adaps")  # does not propagate: listen on it directly
    caplog.set_level(logging.INFO, logger="rllib_adaps")  # as the package sets it, whichever test imports it first
    logger.addHandler(caplog.handler)
    yield caplog
    logger.removeHandler(caplog.handler)


def test_the_path_is_chosen_logged_and_can_be_turned_off(path_log, tmp_path):
    bps = PPOConfig().environment("bps", env_config={"agents_per_type": [2, 2]})
    fast = rllib_adaps.configure_sharing(bps, "fups")
    assert fast.env_runner_cls is FastPathEnvRunner and not fast.is_multi_agent
    assert sharing_module_id(fast) == FAST_PATH_MODULE_ID and fast.rl_module_spec.model_config["agent_ids"] == [f"agent_{i}" for i in range(4)]
    assert "fast path" in path_log.text

    path_log.clear()
    off = rllib_adaps.configure_sharing(bps, "fups", fast_path=False)
    assert off.env_runner_cls is None and set(off.policies) == {SHARED_MODULE_ID} and sharing_module_id(off) == SHARED_MODULE_ID
    assert "multi-agent path (fast_path=False" in path_log.text

    for env_config, reason in [({"leave_at": 1}, "ended their episode after one step while others went on"),
                               ({"turns": True}, "come and go or act in turns")]:
        path_log.clear()
        config = rllib_adaps.configure_sharing(leaving_config(**env_config), "fups")
        assert config.is_multi_agent and config.env_runner_cls is None
        assert "multi-agent path" in path_log.text and reason in path_log.text
        with pytest.raises(ValueError, match="fast_path=True, but the fast path cannot run this config"):
            rllib_adaps.configure_sharing(leaving_config(**env_config), "fups", fast_path=True)

    # The fast path's lean connector pipelines replace RLlib's defaults; a user's module-to-env
    # connector (written for multi-agent actions) keeps the multi-agent path.
    assert fast._env_to_module_connector is slot_env_to_module and fast._module_to_env_connector is slot_module_to_env
    assert not fast.add_default_connectors_to_env_to_module_pipeline and not fast.add_default_connectors_to_module_to_env_pipeline
    path_log.clear()
    own = rllib_adaps.configure_sharing(PPOConfig().environment("bps").env_runners(module_to_env_connector=lambda env, spaces: []), "fups")
    assert own.is_multi_agent and "sets a module-to-env connector" in path_log.text
    back = rllib_adaps.configure_sharing(fast, "fups", fast_path=False)  # a fast-path config set up again
    assert back.is_multi_agent and back.env_runner_cls is None and back.add_default_connectors_to_module_to_env_pipeline

    # The same key in an experiment file's sharing section (the rllib command).
    from rllib_adaps.app.experiment import build_experiment

    path = tmp_path / "exp.yaml"
    path.write_text(yaml.safe_dump({"exp": {"run": "PPO", "env": "bps", "stop": {"training_iteration": 1},
                                            "sharing": {"method": "fups", "fast_path": False}, "config": {}}}))
    assert build_experiment(path).config.is_multi_agent
    path.write_text(path.read_text().replace("fast_path: false", "fast_path: true"))
    assert build_experiment(path).config.env_runner_cls is FastPathEnvRunner


def test_an_agent_leaving_later_stops_the_fast_path_with_a_clear_error():
    slots = SlotVectorEnv([Leaving(leave_at=2)])
    slots.reset(seed=0)
    slots.step(np.zeros(3, np.int64))
    with pytest.raises(FastPathError, match=r"\['agent_1'\] ended their episode while others went on.*fast_path=False"):
        slots.step(np.zeros(3, np.int64))


class EpisodeEnds(RLlibCallback):
    """Records what ``on_episode_end`` sees (the one per-episode hook it implements)."""

    seen = []

    def on_episode_end(self, *, episode, **kwargs):
        EpisodeEnds.seen.append(dict(episode.custom_data, ret=episode.get_return()))


def test_episode_hooks_see_each_agent_slot_and_metrics_are_per_env_episode():
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [1, 2], "max_steps": 3})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .callbacks(EpisodeEnds)
    )
    runner = FastPathEnvRunner(config=rllib_adaps.configure_sharing(config, "fups"))
    EpisodeEnds.seen.clear()
    try:
        assert runner.num_envs == 2 * 3
        episodes = runner.sample(num_episodes=2)  # two env episodes: one per copy, 3 slots each
        metrics = runner.get_metrics()
    finally:
        runner.stop()
    assert runner._episode_hooks_in_use == {"on_episode_end"}  # hooks no callback implements are skipped
    assert len(episodes) == len(EpisodeEnds.seen) == 6
    assert sorted((d["env_index"], d["agent_index"], d["agent_id"]) for d in EpisodeEnds.seen) == [
        (c, i, f"agent_{i}") for c in range(2) for i in range(3)]
    per_env_episode = env_episode_returns(episodes)
    assert len(per_env_episode) == 2 and all(sorted(r) == ["agent_0", "agent_1", "agent_2"] for r in per_env_episode)
    value = {k: (v.peek() if hasattr(v, "peek") else v) for k, v in metrics.items()}
    assert value["num_episodes"] == 2 and value["num_env_steps_sampled"] == 2 * 3
    assert value["episode_return_mean"] == pytest.approx(np.mean([sum(r.values()) for r in per_env_episode]))


def as_slot_episode(sa_episode) -> SingleAgentEpisode:
    """One agent's part of a multi-agent episode as the fast path holds it: a plain episode."""
    return SingleAgentEpisode(
        observations=list(sa_episode.get_observations()), actions=list(sa_episode.get_actions()),
        rewards=list(sa_episode.get_rewards()), terminated=sa_episode.is_terminated, truncated=sa_episode.is_truncated,
        extra_model_outputs={k: list(sa_episode.get_extra_model_outputs(k)) for k in sa_episode.extra_model_outputs},
        observation_space=sa_episode.observation_space, action_space=sa_episode.action_space, len_lookback_buffer=0,
    )


def scalars(results: dict, module_id: str) -> dict:
    out = results[module_id]
    return {k: float(out[k].peek() if hasattr(out[k], "peek") else out[k]) for k in ("total_loss", "policy_loss", "vf_loss", "entropy")}


@pytest.mark.parametrize("method", ["snp", "nops"])  # per-agent masks, per-agent slices: routed by the index column
def test_the_same_episodes_give_the_same_loss_through_either_learner(method):
    base = (
        PPOConfig()
        .environment("roles", env_config={"agents_per_role": [1, 2, 2], "max_steps": 6})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(num_epochs=1, minibatch_size=None)
        .debugging(seed=0)
    )
    ma, fast = (rllib_adaps.configure_sharing(base, method, fast_path=f) for f in (False, True))
    runner = MultiAgentEnvRunner(config=ma)
    try:
        episodes = runner.sample(num_episodes=2, explore=True)  # whole episodes, processed observations written back
    finally:
        runner.stop()
    # In the order the multi-agent Learner's connectors put agent episodes into the batch. The
    # order matters to RLlib on both paths alike: GAE's value target at each episode's masked
    # bootstrap row reads the next episode's first value, and advantages are standardised over
    # all rows, masked ones included.
    slots = [as_slot_episode(sa) for sa in ConnectorV2.single_agent_episode_iterator(episodes, agents_that_stepped_only=False)]
    assert len(slots) == 2 * 5 and all(len(s) == 6 for s in slots)

    spec = fast.rl_module_spec
    learners = {}
    for config, mid in ((ma, SHARED_MODULE_ID), (fast, FAST_PATH_MODULE_ID)):
        learners[mid] = config.build_learner(spaces={mid: (spec.observation_space, spec.action_space)})
    learners[SHARED_MODULE_ID].module[SHARED_MODULE_ID].set_state(learners[FAST_PATH_MODULE_ID].module[FAST_PATH_MODULE_ID].get_state())
    timesteps = {"num_env_steps_sampled_lifetime": 0}
    on_ma = scalars(learners[SHARED_MODULE_ID].update(episodes=episodes, timesteps=timesteps), SHARED_MODULE_ID)
    on_fast = scalars(learners[FAST_PATH_MODULE_ID].update(episodes=slots, timesteps=timesteps), FAST_PATH_MODULE_ID)
    assert on_fast == pytest.approx(on_ma, rel=1e-5, abs=1e-6)
    assert on_ma["vf_loss"] > 0


# ------------------------------------------------------------------------------ array sampling
class LoopSampling(FastPathEnvRunner):
    array_sampling = False  # RLlib's per-slot, per-step loop


def episode_record(episode: SingleAgentEpisode, ids: dict) -> dict:
    """Everything a Learner reads from an episode chunk; episode ids by order of appearance."""
    ids.setdefault(episode.id_, len(ids))
    env_ids = ids.setdefault("env", {})
    env_ids.setdefault(episode.custom_data["env_episode_id"], len(env_ids))
    return {
        "id": ids[episode.id_], "env_episode": env_ids[episode.custom_data["env_episode_id"]],
        "tags": {k: episode.custom_data[k] for k in ("agent_id", "agent_index", "env_index")},
        "t": (episode.t_started, episode.t, episode.observations.lookback, episode.actions.lookback),
        "ends": (episode.is_terminated, episode.is_truncated),
        "obs": np.asarray(episode.observations.data), "actions": np.asarray(episode.actions.data),
        "rewards": np.asarray(episode.rewards.data, dtype=np.float64), "infos": list(episode.infos.data),
        **{f"extra/{k}": np.asarray(v.data) for k, v in sorted(episode.extra_model_outputs.items())},
    }


@pytest.mark.parametrize(("name", "env_config"), [
    ("bps", {"agents_per_type": [2, 1], "max_steps": 7}),
    ("lbf", {"levels": [1, 2, 1], "grid_size": 5, "foods": 2, "max_steps": 6}),
    ("roles", {"agents_per_role": [1, 2, 1], "max_steps": 5}),  # per-copy route, padded observations
])
def test_array_sampling_gives_the_episodes_of_rllibs_loop(name, env_config):
    """Same seeds and weights: the same chunks, lookbacks, ends, tags and continuations over
    calls that end mid-episode, on an episode end and right after a reset."""
    import torch

    config = rllib_adaps.configure_sharing(
        PPOConfig().environment(name, env_config=env_config).env_runners(num_env_runners=0, num_envs_per_env_runner=3)
        .debugging(seed=0), "fups", fast_path=True)
    arrays, loop = FastPathEnvRunner(config=config), LoopSampling(config=config)
    try:
        loop.module.set_state(arrays.module.get_state())
        ids_arrays, ids_loop = {}, {}
        for call, env_steps in enumerate([4, 3, 11, 1, 2, 9, 6]):
            torch.manual_seed(call)
            ours = [episode_record(e, ids_arrays) for e in arrays.sample(num_timesteps=env_steps, explore=True)]
            torch.manual_seed(call)
            theirs = [episode_record(e, ids_loop) for e in loop.sample(num_timesteps=env_steps, explore=True)]
            assert len(ours) == len(theirs)
            for a, b in zip(ours, theirs):
                assert a.keys() == b.keys()
                for key in a:
                    np.testing.assert_equal(a[key], b[key], err_msg=f"call {call}, {key}")
        assert any(r["ends"] != (False, False) for r in ours + theirs) or ids_arrays["env"]
        assert len(ids_arrays["env"]) > 3  # several env episodes ended and began
    finally:
        arrays.stop()
        loop.stop()


# ------------------------------------------------------------------------------ real training
def small_ppo(seed=0, **runners):
    return (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(**{"num_env_runners": 0, "num_envs_per_env_runner": 2, **runners})
        .training(train_batch_size_per_learner=400, minibatch_size=400, num_epochs=2, lr=1e-3)
        .reporting(metrics_num_episodes_for_smoothing=16)  # episode metrics of the last iteration (16 episodes)
        .debugging(seed=seed)
    )


#: Spaced so that no two seeds share env streams (each resets its copies with seed + copy).
SEEDS = (0, 1000, 2000, 3000, 4000)
ITERATIONS = 5
#: Equivalence bound on the paired difference of mean returns (fast - multi-agent path), about 3%
#: of this env's returns (-180 per episode): a path that dropped one agent's reward would be off
#: by about 30, one that counted episodes wrong by more.
EQUIVALENCE_BOUND = 6.0


@pytest.fixture(scope="module")
def both_paths(ray_local):
    """FuPS on each path, 5 seeds, 5 iterations of 400 env steps (2,000 env steps)."""
    runs = {}
    for fast in (True, False):
        for seed in SEEDS:
            algo = rllib_adaps.configure_sharing(small_ppo(seed), "fups", fast_path=fast).build_algo()
            try:
                runs[fast, seed] = [algo.train() for _ in range(ITERATIONS)]
            finally:
                algo.stop()
    return runs


@pytest.mark.parametrize("fast", [True, False], ids=["fast", "multi_agent"])
def test_budgets_are_env_steps_and_the_return_is_the_sum_over_agents(both_paths, fast):
    for seed in SEEDS:
        results = both_paths[fast, seed]
        env_runners = [r["env_runners"] for r in results]
        # 400 env steps per iteration (2 env copies x 200 steps), whatever the number of agents.
        assert [e["num_env_steps_sampled_lifetime"] for e in env_runners] == [400 * (i + 1) for i in range(ITERATIONS)]
        assert all(e["num_agent_steps_sampled_lifetime"] == {f"agent_{i}": 400 * ITERATIONS for i in range(6)} for e in env_runners[-1:])
        assert env_runners[-1]["num_episodes_lifetime"] == 400 * ITERATIONS // 25
        assert env_runners[-1]["episode_len_mean"] == 25
        last = env_runners[-1]
        assert last["episode_return_mean"] == pytest.approx(sum(last["agent_episode_returns_mean"].values()), rel=1e-9)
        # The Learner trains N rows per env step and epoch: on the fast path (the array
        # training step) exactly; RLlib's step adds a loss-masked bootstrap row per agent and
        # episode chunk.
        rows = results[-1]["learners"][FAST_PATH_MODULE_ID if fast else SHARED_MODULE_ID]["num_module_steps_trained"]
        assert rows == 2 * 6 * 400 if fast else 2 * 6 * 400 < rows < 2 * 6 * 500


def test_both_paths_are_equivalent_in_returns_on_paired_seeds(both_paths):
    """Equivalence, not just no detected difference: a seed gives both paths the same env streams
    and initial weights, so its two runs are a pair. Two one-sided t-tests (TOST) at the 5% level
    on the paired difference of each run's mean return over its 5 iterations (80 episodes) must
    put it within +-EQUIVALENCE_BOUND; equivalently, the difference's 90% interval lies inside the
    bound. Measured on 8 seeds: mean difference 0.8, standard deviation 1.8 (interval half-width
    about 1.7 for 5 seeds)."""
    def mean_return(fast, seed):
        return np.mean([r["env_runners"]["episode_return_mean"] for r in both_paths[fast, seed]])

    diffs = np.array([mean_return(True, s) - mean_return(False, s) for s in SEEDS])
    half_width = scipy.stats.t.ppf(0.95, len(diffs) - 1) * diffs.std(ddof=1) / np.sqrt(len(diffs))
    low, high = diffs.mean() - half_width, diffs.mean() + half_width
    print(f"paired differences {np.round(diffs, 2)}; 90% interval [{low:.2f}, {high:.2f}]; bound {EQUIVALENCE_BOUND}")
    assert -EQUIVALENCE_BOUND < low and high < EQUIVALENCE_BOUND


# Identity pre-training, remote EnvRunners and restores on the fast path: bps takes it by default,
# so tests/test_sharing_e2e.py (all six methods, AdaPS and SePS with a remote EnvRunner) and
# tests/test_checkpoint.py run there; each also keeps a case on the multi-agent path.
