"""``SharingCallback``: the schedule of identity pre-training, and per-group metrics.

Timeline of a run of a pre-training method (env steps sampled, lifetime):
1. Optional (``shared_training_env_steps``, default 0): every agent acts and learns with the
   shared parameters.
2. Then (by default at the start of the first ``train()``, before any update: the AdaPS
   paper's timeline): every EnvRunner samples ``identity_env_steps`` with the current policy
   (more, if some agent has fewer than ``min_transitions_per_agent`` transitions); the
   driver fits identities and clusters (``rllib_adaps.core.identity``); the method turns the fit
   into routing tables (``SharingMethod.plan_install``), and the plan is written into every
   Learner's and every EnvRunner's copy of the module (``methods.apply_plan``). The
   collection's env steps count as sampled env steps, so a budget in env steps is the same
   total for every method; none of them trains the policy.
3. Optionally, re-clustering every ``recluster_every_env_steps``.

Every method logs, every iteration, ``sharing/*`` (groups of agents that use the same
parameters, each group's mean agent return, parameter counts); pre-training methods also log
``identity_pretraining/*`` from the first iteration on (NaN before the fit), so Tune's CSV,
whose header is fixed at the first row, keeps the scalars.
"""

from __future__ import annotations

import functools
import logging
import time
from typing import Any, Dict, List, Optional

import numpy as np
from ray.exceptions import RayActorError
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, EPISODE_AGENT_RETURN_MEAN, NUM_ENV_STEPS_SAMPLED_LIFETIME
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.core.identity import IdentityResult, fit_identities
from rllib_adaps.methods import PretrainingOptions, SharingMethod, SharingSpec, apply_plan
from rllib_adaps.rllib.array_training import install_array_training
from rllib_adaps.rllib.module_ids import engine_module
from rllib_adaps.rllib.shims import (
    before_first_training_step,
    check_gradients_once,
    env_runner_groups,
    foreach_learner,
    fused_adam,
    wrap_restores,
)

logger = logging.getLogger("rllib_adaps")

RESULT_KEY = "identity_pretraining"
SHARING_KEY = "sharing"
#: Scalars in every result of a pre-training method (NaN until the first fit).
IDENTITY_SCALARS = ("num_clusters", "adjusted_rand_index", "vae_loss", "chosen_k_score")


# --------------------------------------------------------------------- on the EnvRunners
def collect_transitions(env_runner, *, num_env_steps: int, own_obs_dim: Optional[int] = None) -> Dict[str, np.ndarray]:
    """Samples ``num_env_steps`` env steps on one EnvRunner; returns per-agent transitions as arrays.

    Works on both paths: the multi-agent EnvRunner returns ``MultiAgentEpisode``s (one
    ``SingleAgentEpisode`` per agent inside), the fast path's EnvRunner one ``SingleAgentEpisode``
    per agent slot. Either way each observation ends with the agent's index (written by the
    env-to-module connector, or by the fast path's env), which says whose transitions these
    are; that column is then dropped so that the VAE's decoder cannot read the agent's identity
    from its input. Only the agent's own ``own_obs_dim`` columns are kept (a centralised
    critic's columns follow them).
    """
    own = slice(0, -1 if own_obs_dim is None else own_obs_dim)
    parts: List[tuple] = []
    for episode in env_runner.sample(num_timesteps=num_env_steps, explore=True):
        agent_episodes = episode.agent_episodes.values() if hasattr(episode, "agent_episodes") else [episode]
        for sa_episode in agent_episodes:
            actions = np.asarray(sa_episode.get_actions())
            steps = len(actions)
            if steps == 0:
                continue
            obs = np.asarray(sa_episode.get_observations(), dtype=np.float32)
            rewards = np.asarray(sa_episode.get_rewards(), dtype=np.float32)
            index = obs[:steps, -1].astype(np.int64)
            parts.append((index, obs[:steps, own], actions, obs[1 : steps + 1, own], rewards))
    names = ("agent_index", "obs", "actions", "next_obs", "rewards")
    if not parts:
        return {}
    data = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}
    # Canonical order (by agent, then time): episodes list agents in set order, which
    # changes with Python's hash seed and would change the VAE's minibatches between runs.
    order = np.argsort(data["agent_index"], kind="stable")
    return {name: values[order] for name, values in data.items()}


def _env_attribute(env_runner, name: str) -> Any:
    """An attribute of the EnvRunner's env (None if it has none), on either path's vector env."""
    env = getattr(env_runner, "env", None)
    env = getattr(env, "unwrapped", env)
    if hasattr(env, name):  # the fast path's SlotVectorEnv
        return getattr(env, name)
    envs = getattr(env, "envs", None)
    if not envs:
        return None
    return getattr(envs[0].unwrapped, name, None)


def _true_agent_types(env_runner) -> Optional[Dict[str, int]]:
    """The env's ground-truth agent types (evaluation only)."""
    return _env_attribute(env_runner, "true_agent_types")


def _own_observation_features(env_runner) -> Optional[tuple]:
    """The observation columns the env declares as each agent's own (``TypedParallelEnv``)."""
    features = _env_attribute(env_runner, "own_observation_features")
    return None if features is None else tuple(int(c) for c in features)


def _module_facts(learner, module_id: str) -> dict:
    m = engine_module(learner, module_id)
    return {"agent_ids": list(m.agent_ids), "num_actions": m.num_actions, "hidden_sizes": list(m.masked_layer_sizes),
            "obs_dim": m.obs_dim,
            "agent_slice": m.agent_slice.cpu().numpy(), "agent_mask": m.agent_mask.cpu().numpy(),
            "agent_cluster": m.agent_cluster.cpu().numpy(), "parameters": m.parameter_counts(),
            "obs_sizes": m.obs_sizes, "action_sizes": m.action_sizes, "spec": m.sharing_spec}


def _engine_module_ids(learner) -> List[str]:
    """Ids of the sharing-engine modules a Learner holds."""
    from rllib_adaps.rllib.module import ParameterSharingModule

    return [mid for mid in learner.module.keys() if isinstance(engine_module(learner, mid), ParameterSharingModule)]


def parameter_groups(agent_slice: np.ndarray, agent_mask: np.ndarray) -> np.ndarray:
    """Agents that use exactly the same parameters (same slice, same mask row) form a group."""
    pairs = np.stack([agent_slice, agent_mask], axis=1)
    _, groups = np.unique(pairs, axis=0, return_inverse=True)
    return groups.reshape(-1)


class SharingCallback(RLlibCallback):
    """Runs identity pre-training for methods that need it; logs per-group metrics for all.

    It takes no options: it reads the run's ``SharingSpec`` from the sharing-engine module
    (its ``model_config``), so the module and the callback can never disagree.
    ``configure_sharing`` adds it; by hand: ``config.callbacks(SharingCallback)``.
    """

    def __init__(self, *args: Any, **kwargs: Any):
        if args or kwargs:
            raise TypeError(
                "SharingCallback takes no arguments: it reads the sharing method and its options from the module's "
                "model_config (e.g. AdaPSModule with model_config={'agent_ids': [...], 'mask_threshold': 0.3}). "
                "Use config.callbacks(SharingCallback)."
            )
        super().__init__()
        self.agent_ids: Optional[List[str]] = None
        self.module_id: Optional[str] = None
        self.spec: Optional[SharingSpec] = None
        self.method: Optional[SharingMethod] = None
        self.result: Optional[IdentityResult] = None
        self.summary: Dict[str, Any] = {"done": False, **{k: float("nan") for k in IDENTITY_SCALARS}}
        self._fit_at_env_step: Optional[int] = None
        self._groups: Optional[np.ndarray] = None
        self._parameters: Dict[str, int] = {}
        self._truth: Optional[Dict[str, int]] = None

    @property
    def options(self) -> PretrainingOptions:
        return self.spec.options

    # ------------------------------------------------------------ RLlib hooks
    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs) -> None:
        ids = foreach_learner(algorithm, _engine_module_ids)[0]
        if len(ids) != 1:
            raise ValueError(f"SharingCallback needs exactly one sharing-engine module (ParameterSharingModule or "
                             f"AdaPSModule) in the run; it has {len(ids)} ({ids}).")
        self.module_id = ids[0]
        install_array_training(algorithm)  # first: before_first_training_step below wraps the step it installs
        fused_adam(algorithm)
        check_gradients_once(algorithm)
        facts = self._facts(algorithm)
        self.agent_ids = facts["agent_ids"]
        self.spec = facts["spec"].with_run_seed(self._run_seed(algorithm))
        self.method = self.spec.for_agents(len(self.agent_ids))
        initial = self.method.initial_plan(facts["hidden_sizes"])
        if initial is not None:  # tables drawn from the run's seed (SNP-PS's masks)
            self._install(algorithm, initial)
            facts = self._facts(algorithm)
        self._read_tables(algorithm, facts)
        wrap_restores(algorithm, [self.module_id], self._read_tables)
        if self.method.pretrains and self.options.shared_training_env_steps == 0:
            before_first_training_step(algorithm, self._fit_at_start)

    @staticmethod
    def _run_seed(algorithm) -> int:
        """``config.seed``; an unseeded run draws one here, once, on the driver (and logs it)."""
        seed = algorithm.config.seed
        if seed is None:
            seed = int(np.random.SeedSequence().generate_state(1)[0])
            logger.info("sharing: the run has no config.seed; its masks, VAE and k-means use seeds derived from %d", seed)
        return int(seed)

    def _fit_at_start(self, algorithm) -> None:
        if self._fit_at_env_step is None:  # not adopted from a restored checkpoint
            env_steps = int(algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
            self.pretrain_and_install(algorithm, env_steps)

    def on_checkpoint_loaded(self, *, algorithm, **kwargs) -> None:
        self._read_tables(algorithm)  # the callback's own state is not checkpointed; the tables are

    def on_train_result(self, *, algorithm, metrics_logger=None, result: dict, **kwargs) -> None:
        env_steps = int(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        if self.method.pretrains and self._is_due(env_steps):
            self.pretrain_and_install(algorithm, env_steps)
        if self.method.pretrains:
            result[RESULT_KEY] = dict(self.summary)
        result[SHARING_KEY] = self._sharing_metrics(result)

    # ------------------------------------------------------------ tables and metrics
    def _facts(self, algorithm) -> dict:
        return foreach_learner(algorithm, functools.partial(_module_facts, module_id=self.module_id))[0]

    def _read_tables(self, algorithm, facts: Optional[dict] = None) -> None:
        """Takes groups, counts and (restored runs) the installed clustering from the module."""
        fused_adam(algorithm)  # a restore loaded the checkpoint's optimizer settings (shims, note 7)
        facts = facts or self._facts(algorithm)
        self._groups = parameter_groups(facts["agent_slice"], facts["agent_mask"])
        self._parameters = facts["parameters"]
        clusters = facts["agent_cluster"]
        if self.method is None or not self.method.pretrains or (clusters < 0).any():
            return
        if self._fit_at_env_step is None:  # a restored run: adopt what its modules carry
            env_steps = 0
            if getattr(algorithm, "metrics", None) is not None:
                env_steps = int(algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
            self._fit_at_env_step = env_steps
            sizes = np.bincount(clusters)
            self.summary = {**self.summary, "done": True, "restored": True, "num_clusters": float(len(sizes)),
                            "cluster_sizes": sizes.tolist(), "labels": clusters.tolist()}
            # the fit's ARI again: campaigns and the progress table read it from the latest result
            self.summary["adjusted_rand_index"] = self._adjusted_rand_index(algorithm, clusters)

    def _sharing_metrics(self, result: dict) -> dict:
        returns = result.get(ENV_RUNNER_RESULTS, {}).get(EPISODE_AGENT_RETURN_MEAN, {}) or {}
        per_group: Dict[str, float] = {}
        for g in range(int(self._groups.max()) + 1):
            values = [returns[a] for a, ga in zip(self.agent_ids, self._groups) if ga == g and a in returns]
            per_group[str(g)] = float(np.mean(values)) if values else float("nan")
        return {
            "num_groups": int(self._groups.max()) + 1,
            "group_of_agent": self._groups.tolist(),
            "group_return_mean": per_group,
            "parameters_in_use": self._parameters["in_use"],
            "parameters_allocated": self._parameters["allocated"],
        }

    # ------------------------------------------------------------ the work
    def _is_due(self, env_steps: int) -> bool:
        if self._fit_at_env_step is None:
            return env_steps >= self.options.shared_training_env_steps
        every = self.options.recluster_every_env_steps
        return every is not None and env_steps - self._fit_at_env_step >= every

    def pretrain_and_install(self, algorithm, env_steps: int) -> IdentityResult:
        """Collects transitions, fits identities and clusters, installs the result everywhere."""
        opts = self.options
        logger.info("identity pre-training at %d env steps: collecting %d env steps of transitions", env_steps, opts.identity_env_steps)
        facts = self._facts(algorithm)
        start = time.perf_counter()
        data = self._collect(algorithm, facts["obs_dim"])
        collect_seconds = time.perf_counter() - start
        logger.info("identity pre-training: collected %d transitions in %.1fs; fitting the VAE and clustering",
                    len(data["agent_index"]), collect_seconds)
        result = fit_identities(
            data["agent_index"], data["obs"], data["actions"], data["next_obs"], data["rewards"],
            num_agents=len(self.agent_ids), num_actions=facts["num_actions"], num_clusters=opts.num_clusters,
            vae=opts.vae, seed=opts.seed, obs_sizes=facts["obs_sizes"], action_sizes=facts["action_sizes"],
            min_transitions_per_agent=opts.min_transitions_per_agent, own_features=self._own_features(algorithm),
        )
        start = time.perf_counter()
        plan = self.method.plan_install(result, facts["agent_slice"], facts["hidden_sizes"])
        self._install(algorithm, plan)
        install_seconds = time.perf_counter() - start
        self.result = result
        self._fit_at_env_step = env_steps
        self.summary = self._summarise(algorithm, result, len(data["agent_index"]), collect_seconds, install_seconds, env_steps)
        self._read_tables(algorithm)
        logger.info(
            "identity pre-training done: K=%d, cluster sizes %s, ARI vs true types %s (VAE + k-means %.1fs, install %.2fs)",
            result.num_clusters, result.cluster_sizes(), self.summary.get("adjusted_rand_index", "n/a"), result.fit_seconds, install_seconds,
        )
        self._write_artifacts(algorithm, result)
        return result

    def _install(self, algorithm, plan) -> None:
        """Writes the plan into every Learner's module (with its optimizer) and every EnvRunner's."""
        module_id = self.module_id

        def on_learner(learner):
            optimizers = [opt for _, opt in learner.get_optimizers_for_module(module_id)]
            apply_plan(engine_module(learner, module_id), plan, optimizers)

        def on_runner(env_runner):
            module = engine_module(env_runner, module_id)
            if module is not None:
                apply_plan(module, plan)

        foreach_learner(algorithm, on_learner)
        for group in env_runner_groups(algorithm):
            group.foreach_env_runner(on_runner, local_env_runner=True, timeout_seconds=None)

    def _write_artifacts(self, algorithm, result: IdentityResult) -> None:
        """Writes clusters.json/png into the trial directory (Tune) or the Algorithm's logdir."""
        from rllib_adaps.core.artifacts import write_cluster_artifacts

        directory = getattr(algorithm, "logdir", None)
        if not directory:
            return
        paths = write_cluster_artifacts(directory, self.agent_ids, result.identities, result.labels, self.summary, self._truth)
        storage = getattr(algorithm, "_storage", None)  # Tune's trial storage (local or remote)
        if storage is not None:
            import pyarrow.fs

            for path in paths:
                pyarrow.fs.copy_files(str(path), f"{storage.trial_fs_path}/{path.name}",
                                      destination_filesystem=storage.storage_filesystem)
            paths = [f"{storage.trial_fs_path}/{p.name}" for p in paths]
        logger.info("identity pre-training: wrote %s and %s", *paths)

    def _collect(self, algorithm, own_obs_dim: int) -> Dict[str, np.ndarray]:
        """Transitions from every EnvRunner, until every agent has enough of them.

        Nothing is installed before the fit succeeds, so a failure here leaves the run on its
        shared parameters, never with half-installed tables.
        """
        opts, group = self.options, algorithm.env_runner_group
        parts: List[Dict[str, np.ndarray]] = []
        counts = np.zeros(len(self.agent_ids), np.int64)
        rounds = 4
        for _ in range(rounds):
            new = self._collect_once(group, own_obs_dim)
            if not new:
                logger.warning("identity pre-training: no EnvRunner returned transitions; restoring EnvRunners and retrying")
                algorithm.restore_env_runners(group)
                continue
            parts += new
            for part in new:
                counts += np.bincount(part["agent_index"], minlength=len(counts))
            if counts.min() >= opts.min_transitions_per_agent:
                return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
            logger.info("identity pre-training: agents with fewer than %d transitions: %s; collecting more",
                        opts.min_transitions_per_agent, [a for a, c in zip(self.agent_ids, counts) if c < opts.min_transitions_per_agent])
        if not parts:
            raise RuntimeError("Identity pre-training failed: no EnvRunner returned transitions, even after restoring failed "
                               "EnvRunners. Nothing was installed; the run can be resumed from its last checkpoint.")
        short = {a: int(c) for a, c in zip(self.agent_ids, counts) if c < opts.min_transitions_per_agent}
        raise RuntimeError(
            f"Identity pre-training stopped: after {rounds} collections of {opts.identity_env_steps} env steps, these agents "
            f"have fewer than min_transitions_per_agent={opts.min_transitions_per_agent} transitions: {short}. An identity "
            "cannot be fitted for an agent that (almost) never acts; raise identity_env_steps, or check that the env lets "
            "every agent act. Nothing was installed."
        )

    def _collect_once(self, group, own_obs_dim: int) -> List[Dict[str, np.ndarray]]:
        remote = group.num_remote_env_runners()
        per_runner = int(np.ceil(self.options.identity_env_steps / max(remote, 1)))
        try:
            parts = group.foreach_env_runner(
                functools.partial(collect_transitions, num_env_steps=per_runner, own_obs_dim=own_obs_dim),
                local_env_runner=remote == 0,
            )
        except RayActorError as err:  # an EnvRunner died and fault tolerance is off
            raise RuntimeError(
                "Identity pre-training failed: an EnvRunner failed while collecting transitions "
                f"({type(err).__name__}). Nothing was installed. Enable "
                "config.fault_tolerance(restart_failed_env_runners=True) to recover automatically, "
                "or resume from the last checkpoint."
            ) from err
        return [p for p in parts if p]

    def _summarise(self, algorithm, result, num_transitions, collect_seconds, install_seconds, env_steps) -> dict:
        selection = result.k_selection
        chosen = selection.get("scores", {}).get(str(result.num_clusters), float("nan"))
        summary = {
            "done": True,
            "env_steps_at_fit": env_steps,
            "num_transitions": num_transitions,
            "num_clusters": float(result.num_clusters),
            "cluster_sizes": result.cluster_sizes(),
            "labels": result.labels.tolist(),
            "vae_loss": float(result.vae_loss),
            "chosen_k_score": float(chosen),
            "adjusted_rand_index": self._adjusted_rand_index(algorithm, result.labels),
            "identity_leak_features": result.identity_leaks,
            "collect_seconds": collect_seconds,
            "fit_seconds": result.fit_seconds,
            "install_seconds": install_seconds,
            "seeds": self.spec.options.resolved_seeds(),
        }
        summary["k_selection"] = selection
        return summary

    def _adjusted_rand_index(self, algorithm, labels) -> float:
        """ARI of ``labels`` (one per agent) against the env's true types; NaN if it has none."""
        types = self._truth = self._true_types(algorithm)
        if types is None:
            return float("nan")
        return float(adjusted_rand_score([types[a] for a in self.agent_ids], labels))

    def _own_features(self, algorithm) -> Optional[tuple]:
        """The observation columns the env declares as each agent's own, if it declares them."""
        for features in algorithm.env_runner_group.foreach_env_runner(_own_observation_features, local_env_runner=True):
            if features is not None:
                return features
        return None

    def _true_types(self, algorithm) -> Optional[Dict[str, int]]:
        """Ground-truth types, if the env has them: evaluation only, never used to train."""
        for types in algorithm.env_runner_group.foreach_env_runner(_true_agent_types, local_env_runner=True):
            if types:
                return types
        return None

