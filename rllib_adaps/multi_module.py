"""The MultiRLModule of every sharing method: refuses checkpoints with other module ids.

RLlib's ``MultiRLModule`` restores only the modules it already has and skips the others
without a word, so an AdaPS checkpoint (one module, ``shared``) loaded into a NoPS run (one
module per agent) leaves every module at its initial weights and training goes on as if
nothing happened. Checkpoints of the same module ids but another method or agent count are
refused by ``AdaPSModule.set_state``.
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
                    "Module ids follow the sharing method: NoPS has one module per agent id; FuPS, "
                    "FuPS+id, SNP-PS and AdaPS one module 'shared'; SePS one module per cluster "
                    "('group_k'). Restore into a run with the same method and env, or use "
                    "Algorithm.from_checkpoint(path), which rebuilds the modules the checkpoint holds."
                )
        return super().restore_from_path(path, *args, component=component, **kwargs)
