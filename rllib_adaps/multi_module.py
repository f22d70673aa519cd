"""The MultiRLModule of every sharing method: refuses checkpoints with other module ids.

RLlib's ``MultiRLModule`` restores only the modules it already has and skips the others
without a word: a checkpoint whose modules have other ids would leave the run's module at its
initial weights while training goes on as if nothing happened. Every method now has exactly
one module, ``shared``; checkpoints with other module ids come from rllib-adaps releases before
the one-engine change (NoPS and SePS had a module per agent or cluster) or from other code.
Checkpoints of the same module id but another method, layout or agent count are refused by
``ParameterSharingModule.set_state``.
"""

from __future__ import annotations

import pathlib
from typing import List

from ray.rllib.core.rl_module.multi_rl_module import MultiRLModule

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


class SharingMultiRLModule(MultiRLModule):
    """``MultiRLModule`` whose ``restore_from_path`` checks the module ids first."""

    def restore_from_path(self, path, *args, component=None, **kwargs):
        if component is None:
            stored, own = checkpoint_module_ids(path), sorted(self.keys())
            if stored and stored != own:
                raise CheckpointMismatchError(
                    f"The checkpoint at {path} holds RLModules {stored}, but this run has {own}; RLlib "
                    "would restore only the common ones and leave the rest untrained without a warning. "
                    "Every sharing method of this rllib-adaps release uses one module, 'shared'; a checkpoint "
                    "with per-agent ('agent_i') or per-cluster ('group_k') modules was written by a release "
                    "before the one-engine change (0.1.x) and cannot be loaded into this one: retrain, or "
                    "load it with the release that wrote it."
                )
        return super().restore_from_path(path, *args, component=component, **kwargs)
