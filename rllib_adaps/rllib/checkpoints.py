"""Reading checkpoints of the sharing engine, and refusing those it cannot restore.

``read_checkpoint`` reads an Algorithm checkpoint's config and module states without starting
Ray (``rllib evaluate``), refusing trial directories, plain RLlib checkpoints and older releases.
``check_algorithm_checkpoint`` refuses checkpoints whose RLModules are not the run's one module
(``shared``, or ``default_policy`` on the fast path).

RLlib's ``MultiRLModule`` restores only the modules it already has and skips the others
without a word: a checkpoint whose modules have other ids would leave the run's module at its
initial weights while training goes on as if nothing happened. Every method of this release
has exactly one module, ``shared`` on the multi-agent path and ``default_policy`` on the fast
path (``rllib_adaps.rllib.module_ids``); checkpoints with other module ids come from releases before
the one-engine change (NoPS and SePS had a module per agent or cluster) or from other code.
Every restore of a run set up by ``configure_sharing`` checks this first (``rllib.shims``).
Checkpoints of the same module id but another method, layout or agent count are refused by
``ParameterSharingModule.set_state``.
"""

from __future__ import annotations

import dataclasses
import pathlib
from typing import Any, Dict, List, Sequence

#: Files RLlib writes into every Checkpointable's directory.
_CHECKPOINT_MARKER = "class_and_ctor_args.pkl"


class CheckpointMismatchError(ValueError):
    """A checkpoint's modules are not the modules of the run that loads it."""


def checkpoint_module_ids(path: str | pathlib.Path) -> List[str]:
    """Module ids stored in a MultiRLModule checkpoint directory (one sub-directory each)."""
    path = pathlib.Path(path)
    if not path.is_dir():
        return []
    return sorted(p.name for p in path.iterdir() if p.is_dir() and (p / _CHECKPOINT_MARKER).is_file())


def check_algorithm_checkpoint(path: str | pathlib.Path, own: Sequence[str]) -> None:
    """Raises ``CheckpointMismatchError`` if the Algorithm checkpoint at ``path`` holds other modules."""
    from ray.rllib.core import COMPONENT_LEARNER, COMPONENT_LEARNER_GROUP, COMPONENT_RL_MODULE

    from rllib_adaps.rllib.module_ids import FAST_PATH_MODULE_ID, MODULE_IDS

    stored = checkpoint_module_ids(pathlib.Path(path) / COMPONENT_LEARNER_GROUP / COMPONENT_LEARNER / COMPONENT_RL_MODULE)
    if stored and stored != sorted(own) and len(stored) == len(own) == 1 and stored[0] in MODULE_IDS and own[0] in MODULE_IDS:
        written, wanted = ("the fast path", "multi-agent path") if stored[0] == FAST_PATH_MODULE_ID else ("the multi-agent path", "fast path")
        raise CheckpointMismatchError(
            f"The checkpoint at {path} holds the module {stored[0]!r}: it was written by a run on {written}, but this "
            f"run is on the {wanted} (module {own[0]!r}). Restore it into a run set up with the same path "
            f"(configure_sharing(..., fast_path={stored[0] == FAST_PATH_MODULE_ID}))."
        )
    if stored and stored != sorted(own):
        raise CheckpointMismatchError(
            f"The checkpoint at {path} holds RLModules {stored}, but this run has {sorted(own)}; RLlib would restore "
            "only the common ones and leave the rest untrained without a warning. Every sharing method of this "
            "rllib-adaps release uses one module ('shared', or 'default_policy' on the fast path); a checkpoint with per-agent ('agent_i') or per-cluster "
            "('group_k') modules was written by a release before the one-engine change (0.1.x) and cannot be loaded "
            "into this one: retrain, or load it with the release that wrote it."
        )


class CheckpointError(ValueError):
    """A path that is not a checkpoint this package can read; the message says what to pass."""


@dataclasses.dataclass
class AlgorithmCheckpoint:
    """An RLlib Algorithm checkpoint of a run of the sharing engine, read without starting Ray.

    RLlib writes the Algorithm's config (``class_and_ctor_args.pkl``) and each RLModule's state
    (``learner_group/learner/rl_module/<module id>/module_state.pkl``) as plain files: that is all
    an evaluation needs, so no Algorithm (and no EnvRunner actors) is built to read it.
    """

    path: pathlib.Path
    algorithm: str
    config_state: Dict[str, Any]

    @property
    def env(self) -> Any:
        return self.config_state.get("env")

    @property
    def env_config(self) -> Dict[str, Any]:
        return dict(self.config_state.get("env_config") or {})

    @property
    def model_config(self) -> Dict[str, Any]:
        return dict(self.config_state["_rl_module_spec"].model_config or {})

    @property
    def method(self) -> str:
        return self.model_config.get("sharing_method") or "fups"

    @property
    def agent_ids(self) -> List[str]:
        return list(self.model_config.get("agent_ids") or [])

    def config(self):
        """The run's AlgorithmConfig (unfrozen copy)."""
        from ray.rllib.algorithms.algorithm_config import AlgorithmConfig

        return AlgorithmConfig.from_state(dict(self.config_state)).copy(copy_frozen=False)

    def module_states(self) -> Dict[str, Any]:
        """Module id -> the Learner's RLModule state (the trained weights and tables)."""
        from ray import cloudpickle

        root = self.path / "learner_group" / "learner" / "rl_module"
        states = {}
        for module_dir in sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []:
            state_file = module_dir / "module_state.pkl"
            if not state_file.is_file():
                raise CheckpointError(f"{module_dir} has no module_state.pkl (RLlib's default cloudpickle format is needed).")
            with open(state_file, "rb") as f:
                states[module_dir.name] = cloudpickle.load(f)
        if not states:
            raise CheckpointError(f"The checkpoint at {self.path} holds no Learner RLModule state ({root}).")
        return states


def read_checkpoint(path: str | pathlib.Path) -> AlgorithmCheckpoint:
    """Reads an Algorithm checkpoint of this package; a clear error for anything else.

    A trial directory (holding ``checkpoint_*``) is named as such with its latest checkpoint; a
    plain RLlib checkpoint (another RLModule) and one written by a release before this layout
    (0.2 and older) are refused with what to do.
    """
    path = pathlib.Path(path).expanduser().resolve()
    if not path.exists():
        raise CheckpointError(f"Checkpoint not found: {path}")
    if not (path / _CHECKPOINT_MARKER).is_file():
        inside = sorted(path.glob(f"checkpoint_*/{_CHECKPOINT_MARKER}")) or sorted(path.glob(f"*/checkpoint_*/{_CHECKPOINT_MARKER}"))
        if inside:
            kind = "a trial directory" if inside[0].parent.parent == path else "an experiment directory"
            raise CheckpointError(f"{path} is {kind}, not a checkpoint: pass one of its checkpoint_* directories, "
                                  f"e.g. the latest: {max((p.parent for p in inside), key=lambda p: p.stat().st_mtime)}")
        raise CheckpointError(f"{path} is not an RLlib Algorithm checkpoint (it has no {_CHECKPOINT_MARKER}): pass a "
                              "checkpoint_* directory that `rllib train` or Algorithm.save_to_path() wrote.")
    from ray import cloudpickle

    from rllib_adaps.rllib.module import ParameterSharingModule

    try:
        with open(path / _CHECKPOINT_MARKER, "rb") as f:
            stored = cloudpickle.load(f)
    except (ModuleNotFoundError, AttributeError) as err:
        if "rllib_adaps" in str(err):
            raise CheckpointError(
                f"The checkpoint at {path} was written by an older rllib-adaps release (0.2 or earlier, {err}); its "
                "layout cannot be loaded by this release: retrain, or evaluate it with the release that wrote it."
            ) from None
        raise CheckpointError(f"The checkpoint at {path} cannot be read here ({type(err).__name__}: {err}).") from None
    algorithm_class = stored.get("class")
    config_state = stored["ctor_args_and_kwargs"][0][0] if stored.get("ctor_args_and_kwargs", ((),))[0] else None
    if not isinstance(config_state, dict):
        raise CheckpointError(f"{path} is a checkpoint of {getattr(algorithm_class, '__name__', algorithm_class)}, not of "
                              "an RLlib Algorithm: pass an Algorithm's checkpoint_* directory.")
    spec = config_state.get("_rl_module_spec")
    module_class = getattr(spec, "module_class", None)
    if not (isinstance(module_class, type) and issubclass(module_class, ParameterSharingModule)):
        name = getattr(module_class, "__name__", "RLlib's default")
        raise CheckpointError(
            f"The checkpoint at {path} is a plain RLlib {algorithm_class.__name__} checkpoint ({name} RLModule), not one of "
            "a run set up by rllib-adaps: `rllib evaluate` reports returns per group of the sharing engine. Evaluate it "
            "with RLlib (Algorithm.from_checkpoint(...).evaluate())."
        )
    return AlgorithmCheckpoint(path, algorithm_class.__name__, config_state)
