"""``configure_sharing``: one call that turns a multi-agent AlgorithmConfig into a run of a method.

Every method runs on one ``ParameterSharingModule``; every agent maps to it, and the module's
tables route each agent to its parameter slice and mask (see ``rllib_adaps.rllib.module``). Methods
themselves live in ``rllib_adaps.methods``.

Two ways to run the env, chosen here (a log line of logger ``rllib_adaps`` says which):
- the fast path (``rllib_adaps.rllib.fast_path``), when the env is a PettingZoo ``ParallelEnv``
  (or a plain wrapper of one) whose agents all act every step: env copies x agents as slots
  of RLlib's single-agent EnvRunner, module id ``default_policy``;
- the multi-agent path otherwise, or with ``fast_path=False``: RLlib's ``MultiAgentEnvRunner``,
  module id ``shared``, observations padded and indexed by ``AgentIndexObservations``.
Both give the module the same observations (same layout) and count budgets in env steps.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Dict, List, Optional

import gymnasium as gym
import numpy as np
from ray.rllib.algorithms.algorithm_config import AlgorithmConfig
from ray.rllib.callbacks.callbacks import RLlibCallback
from ray.rllib.core import DEFAULT_POLICY_ID
from ray.rllib.core.rl_module.rl_module import RLModuleSpec
from ray.rllib.env.env_context import EnvContext
from ray.rllib.utils import force_list
from ray.tune.registry import ENV_CREATOR, _global_registry

from rllib_adaps.envs import ENV_CLASSES, register_envs
from rllib_adaps.methods.spec import METHOD_KEY, SharingSpec, all_option_keys
from rllib_adaps.rllib.callback import SharingCallback, logger
from rllib_adaps.rllib.connectors import AgentIndexConnector, ContinuousActions, joint_observation_space, padded_index_space
from rllib_adaps.rllib.fast_path import FastPathEnvRunner, parallel_env_of, slot_env_to_module, slot_module_to_env
from rllib_adaps.rllib.mapping import AgentModuleMapping
from rllib_adaps.rllib.module import ARRAY_TRAINING_KEY, CRITIC_INPUT_KEY, ENGINE_KEYS, NETWORK_KEYS, PAPER_NETWORK, WEIGHT_INIT_KEY, ParameterSharingModule, read_model_config
from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID, SHARED_MODULE_ID


@dataclasses.dataclass
class EnvAgents:
    """The agents of an env as read once on the driver; their order defines agent indices."""

    agent_ids: List[str]
    observation_spaces: Dict[str, gym.Space]
    action_spaces: Dict[str, gym.Space]
    #: Why the env cannot run on the fast path (None: it can).
    fast_path_problem: Optional[str] = None
    #: The env's global state space (PettingZoo ``state_space``), if it has ``state()``.
    state_space: Optional[gym.spaces.Box] = None

    @property
    def obs_dim(self) -> int:
        return max(int(np.prod(s.shape)) for s in self.observation_spaces.values())

    @property
    def continuous(self) -> bool:
        return isinstance(self.action_spaces[self.agent_ids[0]], gym.spaces.Box)

    @property
    def action_sizes(self) -> List[int]:
        """Actions (Discrete) or action dims (Box) per agent."""
        spaces = [self.action_spaces[a] for a in self.agent_ids]
        return [int(s.shape[0]) if isinstance(s, gym.spaces.Box) else int(s.n) for s in spaces]

    def central_space(self, critic_input: str) -> Optional[gym.spaces.Box]:
        """The columns a centralised critic reads after the agent's own observation."""
        if critic_input == "joint_observations":
            return joint_observation_space([self.observation_spaces[a] for a in self.agent_ids], self.obs_dim)
        if critic_input == "state":
            if self.state_space is None:
                raise ValueError("critic_input='state' needs an env with a global state() and state_space (PettingZoo's "
                                 "ParallelEnv API); this env has none. Use critic_input='joint_observations'.")
            return self.state_space
        return None


def describe_env(config: AlgorithmConfig, pad_observations: bool = True) -> EnvAgents:
    """Builds the config's env once on the driver and reads its agents and spaces.

    The spaces are checked before the env is stepped (the fast-path check steps it with
    discrete actions), so an unsupported space is refused here, not inside the env.
    """
    env_spec = config.env
    if env_spec is None:
        raise ValueError("configure_sharing needs an env: call config.environment(...) first.")
    if isinstance(env_spec, str):
        if not _global_registry.contains(ENV_CREATOR, env_spec) and env_spec in ENV_CLASSES:
            # Tune keeps registrations in the running Ray instance: after a ray.shutdown() and a
            # new ray.init() they are gone, so this package's own envs are registered again.
            register_envs()
        if not _global_registry.contains(ENV_CREATOR, env_spec):
            raise ValueError(
                f"Unknown env '{env_spec}': register it with ray.tune.register_env() (this package "
                "registers 'lbf', 'crware' and 'bps' on import)."
            )
        env = _global_registry.get(ENV_CREATOR, env_spec)(EnvContext(config.env_config, worker_index=0))
    else:
        env = env_spec(EnvContext(config.env_config, worker_index=0))
    try:
        agent_ids = list(getattr(env, "possible_agents", None) or [])
        if not agent_ids:
            raise ValueError(f"The env {env_spec!r} lists no possible_agents; a multi-agent env is needed.")
        info = EnvAgents(agent_ids, {a: env.get_observation_space(a) for a in agent_ids},
                         {a: env.get_action_space(a) for a in agent_ids})
        _check_spaces(info, pad_observations)
        par_env = parallel_env_of(env)
        if par_env is not None and callable(getattr(par_env, "state", None)):
            space = getattr(par_env, "state_space", None)
            info.state_space = space if isinstance(space, gym.spaces.Box) and len(space.shape) == 1 else None
        info.fast_path_problem = fast_path_problem(env, agent_ids)
    finally:
        env.close()
    return info


def fast_path_problem(env: Any, agent_ids: List[str]) -> Optional[str]:
    """Why ``env`` cannot run on the fast path, or None if it can.

    It can if it is (or plainly wraps) a PettingZoo ``ParallelEnv`` whose agents are all present
    after ``reset()`` and all observe, and after one step either all go on or all end. Envs
    whose agents come and go or act in turns fail this; so would one whose agents leave later
    in an episode, which the fast path's env reports as an error when it happens.
    """
    par_env = parallel_env_of(env)
    if par_env is None:
        return f"the env ({type(env).__name__}) is not a PettingZoo ParallelEnv or a plain wrapper of one"
    if set(par_env.possible_agents) != set(agent_ids):
        return "the ParallelEnv's possible_agents differ from its wrapper's"
    observations, _ = par_env.reset(seed=0)
    if set(par_env.agents) != set(agent_ids) or set(observations) != set(agent_ids):
        return "not every agent is present and observes after reset() (agents come and go or act in turns)"
    observations, _, terminated, truncated, _ = par_env.step({a: _neutral_action(par_env.action_space(a)) for a in par_env.agents})
    ended = {a for a in agent_ids if terminated.get(a) or truncated.get(a)}
    if ended and ended != set(agent_ids):
        return "some agents ended their episode after one step while others went on"
    if not ended and set(observations) != set(agent_ids):
        return "not every agent observes every step (agents come and go or act in turns)"
    return None


def _neutral_action(space: gym.Space):
    """An action valid in ``space``: the first discrete one, or the middle of a Box."""
    if isinstance(space, gym.spaces.Box):
        return ((space.low + space.high) / 2).astype(space.dtype)
    return int(getattr(space, "start", 0))


def _check_spaces(info: EnvAgents, pad_observations: bool) -> None:
    for agent in info.agent_ids:
        obs, act = info.observation_spaces[agent], info.action_spaces[agent]
        if not isinstance(obs, gym.spaces.Box) or len(obs.shape) != 1:
            raise ValueError(f"Agent {agent!r} has observation space {obs}; parameter sharing here needs flat Box observations.")
        if isinstance(act, gym.spaces.Box):
            if len(act.shape) != 1 or not (np.isfinite(act.low).all() and np.isfinite(act.high).all()):
                raise ValueError(f"Agent {agent!r} has action space {act}; continuous actions need a flat Box with finite "
                                 "bounds (the engine acts in [-1, 1] and scales to each agent's bounds).")
        elif not isinstance(act, gym.spaces.Discrete):
            raise ValueError(f"Agent {agent!r} has action space {act}; only Discrete and flat Box action spaces are supported.")
    kinds = {type(info.action_spaces[a]).__name__ for a in info.agent_ids}
    if len(kinds) > 1:
        raise ValueError(f"Agents mix action space kinds ({', '.join(sorted(kinds))}); one shared network has one kind of "
                         "head, so every agent needs Discrete actions or every agent Box actions.")
    dims = {int(info.observation_spaces[a].shape[0]) for a in info.agent_ids}
    if len(dims) > 1 and not pad_observations:
        raise ValueError(
            f"Agents have observation sizes {sorted(dims)}; sharing a network needs pad_observations=True "
            "(zero-padding to the largest size)."
        )


def module_spec(info: EnvAgents, model_config: Dict[str, Any]) -> RLModuleSpec:
    """The engine's spec for agents ``info`` with ``model_config``."""
    spaces = [info.observation_spaces[a] for a in info.agent_ids]
    central = info.central_space(model_config.get(CRITIC_INPUT_KEY, "observation"))
    if info.continuous:
        action_space = ContinuousActions([info.action_spaces[a] for a in info.agent_ids]).module_space
    else:
        action_space = gym.spaces.Discrete(max(info.action_sizes))
    return RLModuleSpec(
        module_class=ParameterSharingModule,
        observation_space=padded_index_space(spaces, info.obs_dim, len(info.agent_ids), central),
        action_space=action_space,
        model_config={**model_config, "central_dim": 0 if central is None else int(np.prod(central.shape))},
    )


def configure_sharing(
    config: AlgorithmConfig, method: str, *, pad_observations: bool = True, fast_path: Optional[bool] = None,
    array_training: Optional[bool] = None, **options: Any
) -> AlgorithmConfig:
    """Returns a copy of ``config`` set up to train its multi-agent env with ``method``.

    Args:
        config: an AlgorithmConfig (PPO, APPO, IMPALA) whose env is multi-agent.
        method: one of ``METHODS`` (``nops``, ``fups``, ``fups_id``, ``seps``, ``snp``, ``adaps``).
        pad_observations: zero-pad observations of different sizes to the largest.
        fast_path: None (default): run the env on the fast path (``rllib_adaps.rllib.fast_path``) when
            it allows it, else on RLlib's multi-agent path; False: always the multi-agent path;
            True: the fast path or an error saying why not. Budgets (train batch, stop criteria,
            pre-training schedule) are env steps on both paths; the module id is
            ``default_policy`` on the fast path and ``shared`` on the other
            (``rllib_adaps.rllib.module_ids.sharing_module_id(config)``).
        array_training: None (default): PPO on the fast path takes its training step from the
            sampled arrays in one process (``rllib_adaps.rllib.array_training``) when the
            built Algorithm allows it (one local EnvRunner and Learner), else RLlib's step;
            False: always RLlib's step; True: the array step or an error when the Algorithm
            is built.
        **options: the method's options (``rllib_adaps.methods``, README "Options"): ``snp``:
            ``SNPOptions``; ``seps``: ``PretrainingOptions`` (``num_clusters``,
            ``identity_env_steps``, ``vae={...}``, ...); ``adaps``: ``AdaPSOptions`` (those plus
            ``mask_threshold``, ``mask_seed``, ``masked_networks``). Others take none.
    """
    if not isinstance(config, AlgorithmConfig):
        raise TypeError(f"configure_sharing takes an AlgorithmConfig (e.g. PPOConfig().environment(...)), got "
                        f"{type(config).__name__}.")
    spec = SharingSpec.build(method, options)  # the options' one validation
    if array_training not in (None, True, False):
        raise ValueError(f"array_training must be None (automatic), True or False, got {array_training!r}.")
    config = config.copy(copy_frozen=False)
    user_model = dict(config.model_config)
    misplaced = sorted(k for k in user_model if k in (METHOD_KEY, *ENGINE_KEYS) or k in all_option_keys())
    if misplaced:
        raise ValueError(f"model_config holds {misplaced}, which configure_sharing sets itself: pass the method and its "
                         "options to configure_sharing(config, method, **options) and leave them out of model_config.")
    network, _ = read_model_config(user_model)  # refuses RLlib keys the engine would ignore, before the env is built
    info = describe_env(config, pad_observations)
    _check_network(config, info, network)
    model_config = {
        **PAPER_NETWORK,
        **{k: user_model[k] for k in NETWORK_KEYS if k in user_model},
        "agent_ids": list(info.agent_ids),
        "action_sizes": info.action_sizes,
        "obs_sizes": [int(np.prod(info.observation_spaces[a].shape)) for a in info.agent_ids],
        **({ARRAY_TRAINING_KEY: array_training} if array_training is not None else {}),
        **spec.to_model_config(),
    }
    spec.for_agents(len(info.agent_ids))  # the options that depend on the agents (num_clusters <= N)
    spec = module_spec(info, model_config)
    why_not_fast = _why_not_fast_path(config, info, fast_path, recurrent=bool(network["use_lstm"]))
    if why_not_fast is None:
        module_id = FAST_PATH_MODULE_ID
        if config.is_multi_agent:  # back to RLlib's single-agent set-up
            config.multi_agent(policies={DEFAULT_POLICY_ID}, policy_mapping_fn=AlgorithmConfig.DEFAULT_POLICY_MAPPING_FN,
                               policies_to_train=None)
        # The env writes the padded, indexed observations itself; the lean connector pipelines
        # (fast_path.slot_env_to_module / slot_module_to_env) skip what is a no-op here.
        config.env_runners(env_runner_cls=FastPathEnvRunner, env_to_module_connector=slot_env_to_module,
                           add_default_connectors_to_env_to_module_pipeline=False, module_to_env_connector=slot_module_to_env,
                           add_default_connectors_to_module_to_env_pipeline=False)
        logger.info("configure_sharing: fast path (%d agents as slots of RLlib's single-agent EnvRunner, module id '%s')",
                    len(info.agent_ids), module_id)
    else:
        module_id = SHARED_MODULE_ID
        config.multi_agent(
            policies={SHARED_MODULE_ID},
            policy_mapping_fn=AgentModuleMapping({a: SHARED_MODULE_ID for a in info.agent_ids}),
            policies_to_train=None,
        )
        if isinstance(config.env_runner_cls, type) and issubclass(config.env_runner_cls, FastPathEnvRunner):
            # A config set up for the fast path before: back to RLlib's defaults.
            config.env_runners(env_runner_cls=None, env_to_module_connector=None, module_to_env_connector=None,
                               add_default_connectors_to_env_to_module_pipeline=True,
                               add_default_connectors_to_module_to_env_pipeline=True)
        if network[CRITIC_INPUT_KEY] == "state":
            raise ValueError(f"critic_input='state' runs on the fast path only, and this config cannot take it ({why_not_fast}); "
                             "use critic_input='joint_observations'.")
        if info.continuous and len(set(info.action_sizes)) > 1:
            raise ValueError(f"Agents have Box actions of sizes {sorted(set(info.action_sizes))}; on the multi-agent path "
                             f"({why_not_fast}) continuous actions need one size for every agent (the fast path pads them).")
        joint = network[CRITIC_INPUT_KEY] == "joint_observations"
        config.env_runners(env_to_module_connector=_with_user_connector(config, AgentIndexConnector(info.agent_ids, info.obs_dim, joint)))
        logger.info("configure_sharing: multi-agent path (%s; module id '%s')", why_not_fast, module_id)
    config.rl_module(rl_module_spec=spec)  # one spec: RLlib then builds it inference-only on EnvRunners (rllib.shims, note 4)
    existing = [c for c in force_list(config.callbacks_class) if c is not RLlibCallback and c is not SharingCallback]
    config.callbacks(callbacks_class=[*existing, SharingCallback] if existing else SharingCallback)
    return config


def _why_not_fast_path(config: AlgorithmConfig, info: EnvAgents, fast_path: Optional[bool], recurrent: bool = False) -> Optional[str]:
    """None if the run takes the fast path, else why not (``fast_path=True`` makes it an error)."""
    if fast_path is not None and not isinstance(fast_path, bool):
        raise ValueError(f"fast_path must be None (automatic), True or False, got {fast_path!r}.")
    if fast_path is False:
        return "fast_path=False"
    if recurrent:
        reason = "recurrent policies (use_lstm) need RLlib's state connectors, which the fast path leaves out"
        if fast_path is True:
            raise ValueError(f"fast_path=True, but the fast path cannot run this config: {reason}.")
        return reason
    runner = config.env_runner_cls
    user_connector = getattr(config, "_env_to_module_connector", None)
    if isinstance(user_connector, _ChainedConnectors):
        user_connector = user_connector.user_factory
    user_module_to_env = getattr(config, "_module_to_env_connector", None)
    if info.fast_path_problem is not None:
        reason = info.fast_path_problem
    elif runner is not None and not (isinstance(runner, type) and issubclass(runner, FastPathEnvRunner)):
        reason = f"the config sets its own env_runner_cls ({getattr(runner, '__name__', runner)})"
    elif user_connector is not None and not isinstance(user_connector, AgentIndexConnector) and user_connector is not slot_env_to_module:
        reason = "the config sets an env-to-module connector, which expects multi-agent observations"
    elif user_module_to_env is not None and user_module_to_env is not slot_module_to_env:
        reason = "the config sets a module-to-env connector, which expects multi-agent actions"
    else:
        return None
    if fast_path is True:
        raise ValueError(f"fast_path=True, but the fast path cannot run this config: {reason}.")
    return reason


def _check_network(config: AlgorithmConfig, info: EnvAgents, network: Dict[str, Any]) -> None:
    """Combinations of network, env and algorithm the engine cannot run: refused here, by name."""
    from ray.rllib.algorithms.ppo import PPOConfig

    algorithm = type(config).__name__
    if network["use_lstm"] and not isinstance(config, PPOConfig):
        raise ValueError(f"Recurrent policies (use_lstm) run with PPO only; {algorithm} would need a recurrent target network.")
    if info.continuous and not config.normalize_actions:
        raise ValueError("Continuous actions need config.environment(normalize_actions=True) (RLlib's default): the shared "
                         "head acts in [-1, 1] and each agent's actions are scaled to its own bounds.")
    info.central_space(network[CRITIC_INPUT_KEY])  # an env without state() is refused here


class _ChainedConnectors:
    """The user's env-to-module connector(s) first, then the agent-index connector."""

    def __init__(self, user_factory, ours: AgentIndexConnector):
        self.user_factory, self.ours = user_factory, ours

    def __call__(self, env=None, spaces=None, device=None):
        try:
            user = self.user_factory(env, spaces, device)
        except TypeError:
            user = self.user_factory(env)
        return [*force_list(user), self.ours()]


def _with_user_connector(config: AlgorithmConfig, ours: AgentIndexConnector):
    user = getattr(config, "_env_to_module_connector", None)
    if user is None or isinstance(user, (AgentIndexConnector, _ChainedConnectors)):
        return ours
    return _ChainedConnectors(user, ours)


#: PPO's loss without its extra terms: no KL penalty, value loss unclipped. Part of
#: ``a2c_settings``; the campaign's cause experiments apply it to PPO alone (``--plain-loss``).
PLAIN_LOSS = {"use_kl_loss": False, "kl_coeff": 0.0, "vf_clip_param": float("inf")}


def a2c_settings(
    config: AlgorithmConfig,
    *,
    lr: float = 3e-4,
    entropy_coeff: float = 0.01,
    vf_loss_coeff: float = 0.5,
    gamma: float = 0.99,
    reference: bool = False,
) -> AlgorithmConfig:
    """PPO settings that take the papers' A2C step: one optimizer step per iteration, no KL term.

    ``num_epochs=1`` with ``minibatch_size=None`` makes RLlib take the whole train batch as one
    minibatch (one optimizer step on the one module, whatever the number of agent rows). On that
    only pass the probability ratio is exactly 1, so the clipped surrogate's gradient is the
    policy gradient ``-A * grad log pi``; GAE with lambda 1 gives n-step returns over each
    rollout; the value loss is ``vf_loss_coeff * (V - target)^2`` unclipped.

    ``reference=True``: the SePS reference code's A2C exactly (``../shared/reference/methods.md``):
    advantages not standardised and the loss summed over agents (``ReferenceA2CLearner``), Adam
    eps 1e-5, gradient norm clipped at 0.5, orthogonal init (gain sqrt(2), policy head 0.01,
    value head 1, zero biases). Without it: RLlib's standardised advantages, the mean over agent
    rows, Adam eps 1e-8, no clipping, torch's default init. Before or after ``configure_sharing``.
    """
    config = config.copy(copy_frozen=False).training(
        lr=lr,
        gamma=gamma,
        lambda_=1.0,
        entropy_coeff=entropy_coeff,
        vf_loss_coeff=vf_loss_coeff,
        num_epochs=1,
        minibatch_size=None,
        grad_clip=0.5 if reference else None,
        grad_clip_by="global_norm",
        **PLAIN_LOSS,
    )
    if not reference:
        return config
    from rllib_adaps.rllib.learner import ReferenceA2CLearner

    config.learners(learner_class=ReferenceA2CLearner)
    spec = config._rl_module_spec
    if isinstance(spec, RLModuleSpec) and isinstance(spec.module_class, type) and issubclass(spec.module_class, ParameterSharingModule):
        config.rl_module(rl_module_spec=dataclasses.replace(spec, model_config={**spec.model_config, WEIGHT_INIT_KEY: "orthogonal"}))
    else:
        config.rl_module(model_config={**config.model_config, WEIGHT_INIT_KEY: "orthogonal"})
    return config
