"""The SePS reference code's A2C update on RLlib's PPO Learner (``a2c_settings(reference=True)``).

RLlib's PPO with one epoch over the whole batch takes the A2C step (``a2c_settings``), but three
facts of its Learner differ from the reference code (``../shared/reference/methods.md``): it
standardises advantages per batch, averages the loss over agent rows instead of summing it over
agents, and its Adam has eps 1e-8. This Learner undoes each; gradient clipping (0.5, global
norm) and the orthogonal init are config settings (``a2c_settings``).
"""

from __future__ import annotations

import torch
from ray.rllib.algorithms.ppo.torch.ppo_torch_learner import PPOTorchLearner
from ray.rllib.evaluation.postprocessing import Postprocessing

#: The reference code's Adam epsilon.
REFERENCE_ADAM_EPS = 1e-5


class ReferenceA2CLearner(PPOTorchLearner):
    """PPO's Learner with the reference A2C's loss scale, raw advantages and Adam epsilon."""

    def configure_optimizers_for_module(self, module_id, config=None) -> None:
        params = self.get_parameters(self._module[module_id])
        self.register_optimizer(module_id=module_id, optimizer=torch.optim.Adam(params, eps=REFERENCE_ADAM_EPS),
                                params=params, lr_or_lr_schedule=config.lr)

    def compute_loss_for_module(self, *, module_id, config, batch, fwd_out):
        """Advantages as GAE computed them, before RLlib standardised them (targets minus the
        critic's values, which this single pass has not changed yet); the loss summed over agents
        (the mean over agent rows times the number of agents)."""
        module = self._module[module_id].unwrapped()
        with torch.no_grad():
            values = module.compute_values(batch)
        batch = dict(batch)
        batch[Postprocessing.ADVANTAGES] = batch[Postprocessing.VALUE_TARGETS] - values
        loss = super().compute_loss_for_module(module_id=module_id, config=config, batch=batch, fwd_out=fwd_out)
        return loss * module.num_agents
