"""``IdentityPretrainingCallback``: pre-train identities, cluster, install masks or groups.

Timeline of a run (env steps sampled, lifetime):
1. ``0 .. delay + pretrain``: all agents act and learn with the one shared module.
2. At ``delay + pretrain``: every EnvRunner samples ``identity_env_steps`` with the current
   policy; the transitions (agent index, obs, action, next obs, reward) come back to the
   driver, the VAE is trained and the agents are clustered (``rllib_adaps.identity``).
3. The result is installed everywhere (every Learner, local/remote/evaluation EnvRunner):
   AdaPS: each agent's cluster mask in the shared module; SePS: one module per cluster
   (initialised from the shared one), the new agent -> module mapping, and the shared module
   removed. EnvRunners that are recreated after a failure get it again.
4. Optionally, re-clustering every ``recluster_every_env_steps``: AdaPS gets new masks; SePS
   new group modules, each starting from the old group that held most of its agents.

Results go to the normal RLlib result dict under ``"identity_pretraining"``.
"""

from __future__ import annotations

import dataclasses
import functools
import logging
import pathlib
import time
from typing import Any, Dict, List, Optional, Sequence

import numpy as np
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.utils.metrics import ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME
from sklearn.metrics import adjusted_rand_score

from rllib_adaps.artifacts import write_cluster_artifacts
from rllib_adaps.identity import RECONSTRUCT_TARGETS, IdentityResult, fit_identities
from rllib_adaps.mapping import AgentModuleMapping
from rllib_adaps.masks import check_threshold, cluster_masks
from rllib_adaps.multi_module import checkpoint_module_ids

logger = logging.getLogger("rllib_adaps")
if not logger.handlers:  # progress of pre-training must show from inside Tune's trial actors
    _handler = logging.StreamHandler()
    _handler.setFormatter(logging.Formatter("[rllib-adaps] %(message)s"))
    logger.addHandler(_handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False

SHARED_MODULE_ID = "shared"
RESULT_KEY = "identity_pretraining"
PRETRAINING_METHODS = ("adaps", "seps")


@dataclasses.dataclass
class PretrainingOptions:
    """Identity pre-training settings (SePS reference defaults where they exist)."""

    pretrain_env_steps: int = 20_000  # shared acting and learning before identities are fit
    identity_env_steps: int = 1_000  # env steps sampled for the VAE's transitions
    delay_env_steps: int = 0  # extra shared training before pre-training begins
    num_clusters: Optional[int] = None  # None: Davies-Bouldin over K = 2..N-1
    z_dim: int = 10
    kl_weight: float = 1e-4
    vae_epochs: int = 10
    vae_batch_size: int = 128
    vae_min_updates: int = 2_000  # at least this many VAE gradient steps (small collections)
    vae_lr: float = 1e-3  # SePS: 3e-4 with ~200k env steps; see identity.train_identity_vae
    reconstruct: Sequence[str] = RECONSTRUCT_TARGETS
    drop_identity_leaks: bool = True  # see identity.fit_identities
    recluster_every_env_steps: Optional[int] = None  # None: cluster once
    mask_threshold: float = 0.2  # AdaPS lambda
    seed: int = 0

    @classmethod
    def from_dict(cls, options: Dict[str, Any]) -> "PretrainingOptions":
        names = [f.name for f in dataclasses.fields(cls)]
        unknown = sorted(set(options) - set(names))
        if unknown:
            raise ValueError(f"Unknown pre-training option(s) {unknown}; valid options: {names}.")
        return cls(**options)

    def validate(self, num_agents: int) -> "PretrainingOptions":
        for name in ("pretrain_env_steps", "identity_env_steps", "vae_epochs", "vae_batch_size", "vae_min_updates", "z_dim"):
            if int(getattr(self, name)) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}.")
        if self.delay_env_steps < 0:
            raise ValueError(f"delay_env_steps must be >= 0, got {self.delay_env_steps}.")
        if self.num_clusters is not None and not 1 <= self.num_clusters <= num_agents:
            raise ValueError(
                f"num_clusters (K) must be in [1, {num_agents}] (the number of agents), got {self.num_clusters}."
            )
        if self.num_clusters is None and num_agents < 3:
            raise ValueError(f"With {num_agents} agents K cannot be chosen automatically (K in 2..N-1); set num_clusters.")
        if self.kl_weight < 0 or self.vae_lr <= 0:
            raise ValueError(f"kl_weight must be >= 0 and vae_lr > 0, got {self.kl_weight}, {self.vae_lr}.")
        if self.recluster_every_env_steps is not None and self.recluster_every_env_steps < 1:
            raise ValueError(f"recluster_every_env_steps must be >= 1 or None, got {self.recluster_every_env_steps}.")
        bad = set(self.reconstruct) - set(RECONSTRUCT_TARGETS)
        if not self.reconstruct or bad:
            raise ValueError(f"reconstruct must be a non-empty subset of {RECONSTRUCT_TARGETS}, got {self.reconstruct}.")
        check_threshold(self.mask_threshold)
        return self


# --------------------------------------------------------------------- on the EnvRunners
def collect_transitions(env_runner, *, num_env_steps: int, agent_ids: Sequence[str]) -> Dict[str, np.ndarray]:
    """Samples ``num_env_steps`` on one EnvRunner; returns per-agent transitions as arrays.

    Observations have passed the env-to-module connector: the last column (agent index) is
    dropped so that the VAE's decoder cannot read the agent's identity from its input.
    """
    index = {agent: i for i, agent in enumerate(agent_ids)}
    parts: List[tuple] = []
    for episode in env_runner.sample(num_timesteps=num_env_steps, explore=True):
        for agent, sa_episode in episode.agent_episodes.items():
            actions = np.asarray(sa_episode.get_actions())
            steps = len(actions)
            if steps == 0:
                continue
            obs = np.asarray(sa_episode.get_observations(), dtype=np.float32)
            rewards = np.asarray(sa_episode.get_rewards(), dtype=np.float32)
            parts.append((np.full(steps, index[agent]), obs[:steps, :-1], actions, obs[1 : steps + 1, :-1], rewards))
    names = ("agent_index", "obs", "actions", "next_obs", "rewards")
    data = {name: np.concatenate([p[i] for p in parts]) for i, name in enumerate(names)}
    # Canonical order (by agent, then time): episodes list agents in set order, which
    # changes with Python's hash seed and would change the VAE's minibatches between runs.
    order = np.argsort(data["agent_index"], kind="stable")
    return {name: values[order] for name, values in data.items()}


def _true_agent_types(env_runner) -> Optional[Dict[str, int]]:
    env = getattr(env_runner, "env", None)
    if env is None or not hasattr(env, "envs"):
        return None
    return getattr(env.envs[0].unwrapped, "true_agent_types", None)


# --------------------------------------------------------------------- everywhere
def foreach_learner(algorithm, fn) -> list:
    """``fn(learner)`` on every Learner; plain results (local and remote Learners alike)."""
    results = algorithm.learner_group.foreach_learner(fn)
    if isinstance(results, list):
        return results
    return [call.get() for call in results]


def for_every_module(algorithm, module_id: str, fn) -> None:
    """Calls ``fn(module)`` on ``module_id`` on every Learner and every EnvRunner."""

    def on_learner(learner):
        fn(learner.module[module_id].unwrapped())

    def on_runner(env_runner):
        if env_runner.module is not None and module_id in env_runner.module:
            fn(env_runner.module[module_id])

    foreach_learner(algorithm, on_learner)
    for group in (algorithm.env_runner_group, getattr(algorithm, "eval_env_runner_group", None)):
        if group is not None:
            group.foreach_env_runner(on_runner, local_env_runner=True)


class IdentityPretrainingCallback(RLlibCallback):
    """Runs identity pre-training once the shared phase is over and installs its result.

    Use ``configure_sharing(config, "adaps" | "seps", ...)``, or by hand::

        config.callbacks(IdentityPretrainingCallback.configured(
            method="adaps", agent_ids=[...], pretrain_env_steps=20_000))
    """

    def __init__(
        self,
        method: str = "adaps",
        agent_ids: Optional[Sequence[str]] = None,
        module_id: str = SHARED_MODULE_ID,
        **options: Any,
    ):
        super().__init__()
        if method not in PRETRAINING_METHODS:
            raise ValueError(f"IdentityPretrainingCallback method must be one of {PRETRAINING_METHODS}, got {method!r}.")
        self.method = method
        self.agent_ids = list(agent_ids) if agent_ids else None
        self.module_id = module_id
        self.options = PretrainingOptions.from_dict(options)
        self.result: Optional[IdentityResult] = None
        self.summary: Dict[str, Any] = {"done": False}
        self._fit_at_env_step: Optional[int] = None
        self._truth: Optional[Dict[str, int]] = None
        self._mask_rows: Optional[tuple] = None
        self._agent_module: Optional[Dict[str, str]] = None  # SePS: current agent -> group module
        self._generation = 0  # SePS: how many times groups were installed

    @classmethod
    def configured(cls, **kwargs: Any):
        """A callable for ``config.callbacks(...)`` that builds this callback with ``kwargs``."""
        PretrainingOptions.from_dict({k: v for k, v in kwargs.items() if k not in ("method", "agent_ids", "module_id")})
        return functools.partial(cls, **kwargs)

    # ------------------------------------------------------------ RLlib hooks
    def on_algorithm_init(self, *, algorithm, metrics_logger=None, **kwargs) -> None:
        if self.agent_ids is None:  # restored runs build their modules only with their state
            self.agent_ids = foreach_learner(algorithm, _agents_and_actions)[0][0]
        self.options.validate(len(self.agent_ids))
        self._adopt_installed(algorithm)
        if self.method == "seps":
            self._prepare_restores(algorithm)

    def on_checkpoint_loaded(self, *, algorithm, **kwargs) -> None:
        # This callback's own state is not checkpointed; the modules' buffers are (Tune restore).
        self._adopt_installed(algorithm)

    def _adopt_installed(self, algorithm) -> None:
        """Marks pre-training done if the modules already carry its result (restored run)."""
        tables = foreach_learner(algorithm, lambda learner: {
            mid: tuple(getattr(learner.module[mid].unwrapped(), name).cpu().numpy() for name in ("agent_groups", "actor_masks", "critic_masks"))
            for mid in learner.module.keys()
            if hasattr(learner.module[mid].unwrapped(), "agent_groups")
        })[0]
        modules = {mid: table[0] for mid, table in tables.items()}
        if self.method == "adaps":
            groups = modules.get(self.module_id)
            if groups is None or (groups < 0).any():
                return
            _, actor_rows, critic_rows = tables[self.module_id]
            self._mask_rows = (actor_rows, critic_rows, groups)
        else:
            group_ids = sorted(m for m in modules if m.startswith("group_"))
            if self.module_id in modules or not group_ids or (modules[group_ids[0]] < 0).any():
                return  # not clustered yet, or built from a checkpoint whose state comes next
            groups = modules[group_ids[0]]
            mapping = algorithm.config.policy_mapping_fn
            self._agent_module = {a: mapping(a, None) for a in self.agent_ids}
            self._generation = 1 + max(_generation_of(m) for m in group_ids)
        env_steps = 0
        if getattr(algorithm, "metrics", None) is not None:
            env_steps = int(algorithm.metrics.peek((ENV_RUNNER_RESULTS, NUM_ENV_STEPS_SAMPLED_LIFETIME), default=0))
        self._fit_at_env_step = env_steps
        self.summary = {
            "done": True,
            "restored": True,
            "num_clusters": int(groups.max()) + 1,
            "cluster_sizes": np.bincount(groups).tolist(),
            "labels": groups.tolist(),
        }

    def on_train_result(self, *, algorithm, metrics_logger=None, result: dict, **kwargs) -> None:
        env_steps = int(result.get(ENV_RUNNER_RESULTS, {}).get(NUM_ENV_STEPS_SAMPLED_LIFETIME, 0))
        if self._fit_at_env_step is None:
            # Restores through Algorithm.from_checkpoint()/restore_from_path() call no hook.
            self._adopt_installed(algorithm)
        if self._is_due(env_steps):
            self.pretrain_and_install(algorithm, env_steps)
        result[RESULT_KEY] = dict(self.summary)

    def on_env_runners_recreated(self, *, algorithm, env_runner_group, env_runner_indices, is_evaluation, **kwargs) -> None:
        """A recreated EnvRunner is built from the original config: give it the result again.

        RLlib has already synced the module set and weights (buffers, so AdaPS masks,
        included) before this hook and before the runner samples; the agent -> module
        mapping of SePS lives in the runner's config and is installed here.
        """
        if self._fit_at_env_step is None:
            return
        if self.method == "adaps" and self._mask_rows is not None:
            rows, module_id = self._mask_rows, self.module_id
            fn = lambda er: er.module[module_id].set_agent_masks(*rows)  # noqa: E731
        elif self.method == "seps" and self._agent_module:
            mapping = AgentModuleMapping(self._agent_module)

            def fn(er):
                er.config.multi_agent(policy_mapping_fn=mapping)
                _force_reset(er)
        else:
            return
        env_runner_group.foreach_env_runner(fn, remote_worker_ids=env_runner_indices, local_env_runner=False)

    # ------------------------------------------------------------ the work
    def _is_due(self, env_steps: int) -> bool:
        start = self.options.delay_env_steps + self.options.pretrain_env_steps
        if self._fit_at_env_step is None:
            return env_steps >= start
        every = self.options.recluster_every_env_steps
        return every is not None and env_steps - self._fit_at_env_step >= every

    def pretrain_and_install(self, algorithm, env_steps: int) -> IdentityResult:
        """Collects transitions, fits identities and clusters, installs the result everywhere."""
        opts = self.options
        logger.info("identity pre-training at %d env steps: collecting %d env steps of transitions", env_steps, opts.identity_env_steps)
        start = time.perf_counter()
        data = self._collect(algorithm)
        collect_seconds = time.perf_counter() - start
        num_actions = foreach_learner(algorithm, _agents_and_actions)[0][1]
        logger.info(
            "identity pre-training: collected %d transitions in %.1fs; fitting the VAE and clustering",
            len(data["agent_index"]), collect_seconds,
        )
        result = fit_identities(
            data["agent_index"], data["obs"], data["actions"], data["next_obs"], data["rewards"],
            num_agents=len(self.agent_ids), num_actions=num_actions, num_clusters=opts.num_clusters,
            z_dim=opts.z_dim, kl_weight=opts.kl_weight, epochs=opts.vae_epochs,
            batch_size=opts.vae_batch_size, min_updates=opts.vae_min_updates, lr=opts.vae_lr, reconstruct=opts.reconstruct,
            drop_identity_leaks=opts.drop_identity_leaks, seed=opts.seed,
        )
        start = time.perf_counter()
        if self.method == "adaps":
            self._install_masks(algorithm, result)
        else:
            self._install_groups(algorithm, result)
        install_seconds = time.perf_counter() - start
        self.result = result
        self._fit_at_env_step = env_steps
        self.summary = self._summarise(algorithm, result, len(data["agent_index"]), collect_seconds, install_seconds, env_steps)
        logger.info(
            "identity pre-training done: K=%d, cluster sizes %s, ARI vs true types %s (VAE + k-means %.1fs, install %.2fs)",
            result.num_clusters, result.cluster_sizes(), self.summary.get("adjusted_rand_index", "n/a"),
            result.fit_seconds, install_seconds,
        )
        self._write_artifacts(algorithm, result)
        return result

    def _write_artifacts(self, algorithm, result: IdentityResult) -> None:
        """Writes clusters.json/png into the trial directory (Tune) or the Algorithm's logdir."""
        directory = getattr(algorithm, "logdir", None)
        if not directory:
            return
        paths = write_cluster_artifacts(
            directory, self.agent_ids, result.identities, result.labels, self.summary, self._truth
        )
        storage = getattr(algorithm, "_storage", None)  # Tune's trial storage (local or remote)
        if storage is not None:
            import pyarrow.fs

            for path in paths:
                pyarrow.fs.copy_files(
                    str(path), f"{storage.trial_fs_path}/{path.name}",
                    destination_filesystem=storage.storage_filesystem,
                )
            paths = [f"{storage.trial_fs_path}/{p.name}" for p in paths]
        logger.info("identity pre-training: wrote %s and %s", *paths)

    def _collect(self, algorithm) -> Dict[str, np.ndarray]:
        """Transitions from every healthy EnvRunner; one retry after restoring failed ones.

        Nothing is installed before the fit succeeds, so a failure here leaves the run on its
        shared module, never with half-installed groups.
        """
        group = algorithm.env_runner_group
        for attempt in range(2):
            try:
                parts = self._collect_once(group)
            except Exception as err:  # an EnvRunner died and fault tolerance is off
                raise RuntimeError(
                    "Identity pre-training failed: an EnvRunner failed while collecting transitions "
                    f"({type(err).__name__}). Nothing was installed. Enable "
                    "config.fault_tolerance(restart_failed_env_runners=True) to recover automatically, "
                    "or resume from the last checkpoint."
                ) from err
            if parts:
                return {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
            logger.warning("identity pre-training: no EnvRunner returned transitions; restoring EnvRunners and retrying")
            algorithm.restore_env_runners(group)
        raise RuntimeError(
            "Identity pre-training failed: no EnvRunner returned transitions, even after restoring failed "
            "EnvRunners. Nothing was installed; the run can be resumed from its last checkpoint."
        )

    def _collect_once(self, group) -> List[Dict[str, np.ndarray]]:
        remote = group.num_remote_env_runners()
        per_runner = int(np.ceil(self.options.identity_env_steps / max(remote, 1)))
        parts = group.foreach_env_runner(
            functools.partial(collect_transitions, num_env_steps=per_runner, agent_ids=self.agent_ids),
            local_env_runner=remote == 0,
        )
        return [p for p in parts if p is not None]

    def _install_masks(self, algorithm, result: IdentityResult) -> None:
        hidden_sizes = foreach_learner(algorithm, lambda learner: learner.module[self.module_id].unwrapped().hidden_sizes)[0]
        layers = cluster_masks(result.centres, hidden_sizes, self.options.mask_threshold, self.options.seed)
        cluster_rows = np.concatenate(layers, axis=1)  # [K, sum(hiddens)]
        agent_rows = cluster_rows[result.labels]
        self._mask_rows = (agent_rows, agent_rows, result.labels)
        rows = self._mask_rows
        for_every_module(algorithm, self.module_id, lambda m: m.set_agent_masks(*rows))

    def _install_groups(self, algorithm, result: IdentityResult) -> None:
        """SePS: one module per cluster, the new mapping, the previous module(s) removed.

        The first time every group module starts from the shared module. On re-clustering,
        each new group starts from the old group module holding most of its agents.
        """
        previous = dict(self._agent_module) if self._agent_module else {a: self.module_id for a in self.agent_ids}
        old_ids = sorted(set(previous.values()))
        new_ids = _group_module_ids(result.num_clusters, self._generation)
        sources = {}
        for k, new_id in enumerate(new_ids):
            members = [a for a, label in zip(self.agent_ids, result.labels) if label == k]
            counts = {old: sum(previous[a] == old for a in members) for old in old_ids}
            sources[new_id] = max(old_ids, key=lambda old: (counts[old], -old_ids.index(old)))
        states = foreach_learner(algorithm, lambda learner: {
            old: learner.module[old].unwrapped().get_state() for old in set(sources.values())
        })[0]
        self._replace_group_modules(algorithm, new_ids, result.labels, {new_id: states[sources[new_id]] for new_id in new_ids})
        self._generation += 1

    def _replace_group_modules(self, algorithm, new_ids: List[str], labels: np.ndarray, states: Optional[Dict[str, dict]]) -> None:
        """Adds ``new_ids`` (module ``k`` serves the agents labelled ``k``), removes the rest.

        ``states``: the initial state of each new module, or None when a checkpoint's state
        comes next.
        """
        previous = dict(self._agent_module) if self._agent_module else {a: self.module_id for a in self.agent_ids}
        old_ids = sorted(set(previous.values()))
        mapping = AgentModuleMapping({a: new_ids[k] for a, k in zip(self.agent_ids, labels)})
        spec = algorithm.config.rl_module_spec.rl_module_specs[old_ids[0]]
        for new_id in new_ids:
            algorithm.add_module(
                new_id, dataclasses.replace(spec), new_agent_to_module_mapping_fn=mapping,
                new_should_module_be_updated=new_ids,
            )
        for new_id in new_ids:
            state = states[new_id] if states else None

            def init_group(module, state=state):
                if state is not None:
                    module.set_state(state)
                module.agent_groups.copy_(module.agent_groups.new_tensor(labels))

            for_every_module(algorithm, new_id, init_group)
        for old in old_ids:
            _remove_module(algorithm, old, mapping, new_ids)
        self._agent_module = dict(mapping.agent_to_module)
        # No restart of episodes here: Algorithm.remove_module() already makes every
        # (eval) EnvRunner reset, so no episode goes on with the old mapping.

    def _prepare_restores(self, algorithm) -> None:
        """SePS: lets ``algorithm.restore_from_path`` load a checkpoint taken after clustering.

        Such a checkpoint holds group modules that a run built from the original config (Tune's
        restore, or ``restore_from_path`` on a new Algorithm) does not have, and RLlib loads only
        modules that exist. The group modules and their mapping are built first, from the
        cluster labels stored in the checkpoint; RLlib then loads their weights.
        """
        original = algorithm.restore_from_path

        def restore_from_path(path, *args, **kwargs):
            if kwargs.get("component") is None:
                self._build_checkpoint_groups(algorithm, path)
            return original(path, *args, **kwargs)

        algorithm.restore_from_path = restore_from_path

    def _build_checkpoint_groups(self, algorithm, path) -> None:
        from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE

        from rllib_adaps.module import AdaPSModule

        module_dir = pathlib.Path(path) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE
        stored = checkpoint_module_ids(module_dir)
        own = sorted(foreach_learner(algorithm, lambda learner: list(learner.module.keys()))[0])
        if not stored or stored == own or not all(m.startswith("group_") for m in stored):
            return  # nothing to build; SharingMultiRLModule reports any other mismatch
        labels = AdaPSModule.from_checkpoint(module_dir / stored[0]).agent_groups.numpy()
        if len(labels) != len(self.agent_ids) or (labels < 0).any():
            return  # another agent count, or not clustered: left to the module checks to report
        new_ids = _group_module_ids(int(labels.max()) + 1, _generation_of(stored[0]))
        if sorted(new_ids) != stored:
            return
        logger.info("restoring a SePS checkpoint: building its %d group modules before loading them", len(new_ids))
        # The generation counter and the rest of the callback's state are adopted from the
        # restored modules afterwards (_adopt_installed), as for any restore.
        self._replace_group_modules(algorithm, new_ids, labels, states=None)

    def _summarise(self, algorithm, result, num_transitions, collect_seconds, install_seconds, env_steps) -> dict:
        summary = {
            "done": True,
            "env_steps_at_fit": env_steps,
            "num_transitions": num_transitions,
            "num_clusters": result.num_clusters,
            "cluster_sizes": result.cluster_sizes(),
            "labels": result.labels.tolist(),
            "vae_loss": result.vae_loss,
            "dropped_identity_features": result.dropped_features,
            "davies_bouldin": {str(k): v for k, v in result.davies_bouldin.items()},
            "collect_seconds": collect_seconds,
            "fit_seconds": result.fit_seconds,
            "install_seconds": install_seconds,
        }
        types = self._truth = self._true_types(algorithm)
        if types is not None:
            truth = [types[a] for a in self.agent_ids]
            summary["adjusted_rand_index"] = float(adjusted_rand_score(truth, result.labels))
        return summary

    def _true_types(self, algorithm) -> Optional[Dict[str, int]]:
        """Ground-truth types, if the env has them: evaluation only, never used to train."""
        for types in algorithm.env_runner_group.foreach_env_runner(_true_agent_types, local_env_runner=True):
            if types:
                return types
        return None


def _remove_module(algorithm, module_id: str, mapping, keep: List[str]) -> None:
    """``Algorithm.remove_module`` with a fallback for Learners that reject its keyword.

    RLlib 2.60's LearnerGroup passes ``new_should_module_be_updated`` to every Learner, which
    APPOLearner.remove_module() does not take. The fallback removes the module on each
    Learner here and the rest through the Algorithm, whose config would then hold no module
    spec (it takes it from the Learners' answer): the Learners' spec is written back so that
    checkpoints rebuild the right modules.
    """
    import inspect

    from ray.rllib.core.rl_module.multi_rl_module import MultiRLModuleSpec

    # A failing remote call would take the Learner out of service: decide before calling.
    if "new_should_module_be_updated" in inspect.signature(algorithm.config.learner_class.remove_module).parameters:
        algorithm.remove_module(module_id, new_agent_to_module_mapping_fn=mapping, new_should_module_be_updated=keep)
        return

    foreach_learner(algorithm, lambda learner: learner.remove_module(module_id))
    spec = foreach_learner(algorithm, lambda learner: MultiRLModuleSpec.from_module(learner.module))[0]
    algorithm.remove_module(
        module_id, new_agent_to_module_mapping_fn=mapping, new_should_module_be_updated=keep, remove_from_learners=False
    )
    algorithm.config._is_frozen = False
    algorithm.config.rl_module(rl_module_spec=spec)
    algorithm.config.freeze()


def _group_module_ids(num_clusters: int, generation: int) -> List[str]:
    """SePS module ids of one clustering: ``group_k``, then ``group_k_rN`` after re-clustering N."""
    suffix = f"_r{generation}" if generation else ""
    return [f"group_{k}{suffix}" for k in range(num_clusters)]


def _generation_of(module_id: str) -> int:
    """The clustering a SePS group module id belongs to (inverse of ``_group_module_ids``)."""
    return int(module_id.rsplit("_r", 1)[1]) if "_r" in module_id else 0


def _agents_and_actions(learner) -> tuple:
    """Agent ids and action count of the (first) AdaPSModule on a Learner."""
    module = next(m.unwrapped() for m in learner.module.values() if hasattr(m.unwrapped(), "agent_ids"))
    return list(module.agent_ids), int(module.action_space.n)


def _force_reset(env_runner) -> None:
    env_runner._needs_initial_reset = True
