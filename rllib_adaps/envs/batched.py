"""Batched envs: ``C`` copies of one env held as arrays ``[copies, agents, ...]``, stepped in one call.

The fast path (``rllib_adaps.rllib.fast_path``) steps every env copy of an EnvRunner at once
through :class:`BatchedEnv`; PettingZoo users and RLlib's multi-agent path see one copy through
:class:`BatchedParallelEnv`. Both views run the same code, so they cannot drift apart.

Each copy owns a ``numpy.random.Generator`` seeded as gymnasium seeds an env
(``default_rng(seed)``), so copy ``c`` reset with seed ``s`` replays the episode that a single
env reset with ``s`` plays.
"""

from __future__ import annotations

import operator
from abc import ABC, abstractmethod
from typing import Any, Callable, Mapping, Sequence

import numpy as np
from gymnasium import spaces

from rllib_adaps.envs.base import TypedParallelEnv


class BatchedEnv(ABC):
    """``num_copies`` copies of an env whose agents all act every step and end together.

    Agents are the rows of every per-agent array, in ``possible_agents`` order. Subclasses
    keep their state in arrays with a leading copy axis and must not loop over copies or
    agents in ``step_copies`` (resets may, since they are rare and replay upstream draws).
    """

    #: Short env name used in error messages.
    name: str
    possible_agents: list[str]
    num_copies: int
    #: agent id -> ground-truth type (evaluation only).
    true_agent_types: dict[str, int]
    #: As ``TypedParallelEnv.own_observation_features``.
    own_observation_features: tuple[int, ...] | None = None
    #: Per-agent action that leaves the agent idle, used for agents missing from an action
    #: dict on the ParallelEnv view; None: a missing action is an error.
    idle_actions: np.ndarray | None = None

    @abstractmethod
    def observation_space(self, agent: str) -> spaces.Box: ...

    @abstractmethod
    def action_space(self, agent: str) -> spaces.Discrete: ...

    @abstractmethod
    def reset_copies(self, copies: np.ndarray, seeds: Sequence[int | None]) -> None:
        """Starts new episodes in ``copies`` (int indices); a seed reseeds that copy's generator,
        None goes on with it."""

    @abstractmethod
    def step_copies(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """Steps the copies where ``active`` (bool ``[C]``) holds with ``actions`` (int ``[C, N]``,
        in range). Inactive copies keep their state and draw nothing.

        Returns rewards (float64 ``[C, N]``), terminated and truncated (bool ``[C]``, or
        ``[C, N]`` where agents of a copy may end in different ways in one step); all zero or
        False for inactive copies.
        """

    @abstractmethod
    def observations(self) -> np.ndarray:
        """float32 ``[C, N, D]``: every agent's current observation in every copy."""

    def infos(self) -> list[dict] | None:
        """Per-copy PettingZoo infos of the last reset or step, if the env has any."""
        return None

    #: The global state's space (PettingZoo's ``state_space``); None: the env has no state.
    state_space: spaces.Box | None = None

    def states(self) -> np.ndarray:
        """float32 ``[C, S]``: every copy's global state (a centralised critic's input)."""
        raise NotImplementedError(f"The {self.name} env has no global state().")

    def close(self) -> None:
        pass


def seeded_generator(seed: int | None) -> np.random.Generator:
    """The generator gymnasium gives an env reset with ``seed`` (fresh entropy for None)."""
    return np.random.default_rng(seed)


class BatchedParallelEnv(TypedParallelEnv):
    """One copy of a :class:`BatchedEnv` as a PettingZoo ``ParallelEnv``.

    ``make_batched(n)`` builds ``n`` copies of the same env (same configuration) for the fast
    path.
    """

    def __init__(self, make_core: Callable[[int], BatchedEnv]):
        self._make_core = make_core
        self.core = make_core(1)
        self.possible_agents = list(self.core.possible_agents)
        self.agents: list[str] = []
        self.true_agent_types = dict(self.core.true_agent_types)
        self.own_observation_features = self.core.own_observation_features
        self.metadata = {"name": self.core.name, "render_modes": []}
        self.render_mode = None
        first_space = self.core.action_space(self.possible_agents[0])
        #: Box actions: the shape of one agent's action (None: Discrete actions).
        self._box_shape = first_space.shape if isinstance(first_space, spaces.Box) else None
        self._num_actions = None if self._box_shape else np.array([self.core.action_space(a).n for a in self.possible_agents])
        self._every_action = operator.itemgetter(*self.possible_agents) if len(self.possible_agents) > 1 else (
            lambda actions, agent=self.possible_agents[0]: (actions[agent],))
        self._all_copies = np.zeros(1, dtype=np.intp)
        self._active = np.ones(1, dtype=bool)

    def make_batched(self, num_copies: int) -> BatchedEnv:
        """``num_copies`` fresh copies of this env, stepped as one."""
        return self._make_core(num_copies)

    def observation_space(self, agent: str) -> spaces.Box:
        return self.core.observation_space(agent)

    def action_space(self, agent: str) -> spaces.Discrete:
        return self.core.action_space(agent)

    def reset(self, seed: int | None = None, options: dict | None = None):
        self.core.reset_copies(self._all_copies, [seed])
        self.agents = list(self.possible_agents)
        infos = self.core.infos()
        infos = infos[0] if infos else {agent: {} for agent in self.agents}
        return dict(zip(self.agents, self.core.observations()[0].copy())), infos

    def step(self, actions: Mapping[str, Any]):
        if not self.agents:
            raise RuntimeError(f"{self.core.name}: step() called with no episode running; call reset() first.")
        rewards, terminated, truncated = self.core.step_copies(self._action_array(actions)[None], self._active)
        agents = self.agents
        ended_by_term, ended_by_trunc = bool(terminated[0]), bool(truncated[0])
        infos = self.core.infos()
        infos = infos[0] if infos else {agent: {} for agent in agents}
        results = (
            dict(zip(agents, self.core.observations()[0].copy())),  # the core reuses its arrays
            dict(zip(agents, rewards[0].tolist())),
            dict.fromkeys(agents, ended_by_term),
            dict.fromkeys(agents, ended_by_trunc),
            infos,
        )
        if ended_by_term or ended_by_trunc:
            self.agents = []
        return results

    def _box_array(self, values: list) -> np.ndarray:
        try:
            array = np.asarray(values, dtype=np.float32)
        except (TypeError, ValueError):
            array = None
        if array is None or array.shape != (len(values), *self._box_shape) or not np.isfinite(array).all():
            raise ValueError(f"{self.core.name}: actions must be finite arrays of shape {self._box_shape}, got {values!r}.")
        return array

    def _action_array(self, actions: Mapping[str, Any]) -> np.ndarray:
        """The action dict as ints in agent order; clear errors for missing or invalid actions."""
        try:
            values = list(self._every_action(actions))  # every agent acts: one C call, no loop
        except KeyError:
            idle = self.core.idle_actions
            missing = [agent for agent in self.possible_agents if agent not in actions]
            if idle is None:
                raise ValueError(f"{self.core.name}: no action given for live agent '{missing[0]}'.") from None
            values = [actions[a] if a in actions else idle[i] for i, a in enumerate(self.possible_agents)]
        if self._box_shape is not None:
            return self._box_array(values)
        try:
            array = np.asarray(values, dtype=np.float64)
        except (TypeError, ValueError):
            raise ValueError(f"{self.core.name}: actions must be integers, got {values!r}.") from None
        if array.shape != (len(values),) or not np.all(array == np.round(array)):
            raise ValueError(f"{self.core.name}: actions must be integers, got {values!r}.")
        array = array.astype(np.int64)
        bad = (array < 0) | (array >= self._num_actions)
        if bad.any():
            index = int(np.argmax(bad))
            raise ValueError(
                f"{self.core.name}: action of {self.possible_agents[index]} must be in "
                f"[0, {self._num_actions[index] - 1}], got {array[index]}."
            )
        return array

    def render(self):
        raise NotImplementedError(f"{self.core.name}: rendering is not supported.")

    def close(self) -> None:
        self.core.close()
