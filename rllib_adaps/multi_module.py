"""Refusing checkpoints whose RLModules are not the run's one module (``shared``, or ``default_policy`` on the fast path).

RLlib's ``MultiRLModule`` restores only the modules it already has and skips the others
without a word: a checkpoint whose modules have other ids would leave the run's module at its
initial weights while training goes on as if nothing happened. Every method of this release
has exactly one module, ``shared`` on the multi-agent path and ``default_policy`` on the fast
path (``rllib_adaps.module_ids``); checkpoints with other module ids come from releases before
the one-engine change (NoPS and SePS had a module per agent or cluster) or from other code.
Every restore of a run set up by ``configure_sharing`` checks this first (``rllib_shims``).
Checkpoints of the same module id but another method, layout or agent count are refused by
``ParameterSharingModule.set_state``.
"""

from __future__ import annotations

import pathlib
from typing import List, Sequence

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

    from rllib_adaps.module_ids import FAST_PATH_MODULE_ID, MODULE_IDS

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
