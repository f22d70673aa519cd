"""Reading the one engine module's tables and weights on Learners and EnvRunners (test helper)."""

import sys

import numpy as np
from ray import cloudpickle

from rllib_adaps.rllib_shims import foreach_learner

# The readers run inside Learner and EnvRunner actors, which cannot import this test helper.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TABLES = ("agent_slice", "agent_mask", "agent_cluster", "mask_table")
#: A short VAE fit for tests that check where tables go, not how good the clusters are.
QUICK_FIT = {"vae_min_updates": 150, "vae_epochs": 2}


def module_view(module) -> dict:
    """Tables and the actor's weights of one engine module, as numpy arrays."""
    module = module.unwrapped() if hasattr(module, "unwrapped") else module
    state = module.state_dict()
    view = {name: state[name].cpu().numpy().copy() for name in TABLES}
    view.update({k: v.detach().cpu().numpy().copy() for k, v in state.items() if k.startswith("actor.")})
    view["module_ids"] = None
    return view


def learner_views(algo) -> list:
    def read(learner):
        view = module_view(learner.module["shared"])
        view["module_ids"] = sorted(learner.module.keys())
        return view

    return foreach_learner(algo, read)


def runner_views(algo, evaluation=False) -> list:
    group = algo.eval_env_runner_group if evaluation else algo.env_runner_group

    def read(er):
        view = module_view(er.module["shared"])
        view["module_ids"] = sorted(er.module.keys())
        view["mapping"] = [er.config.policy_mapping_fn(a, None) for a in er.module["shared"].agent_ids]
        view["has_critic"] = hasattr(er.module["shared"], "critic")
        return view

    # The remote EnvRunners; the local one when sampling happens there (num_env_runners=0).
    return group.foreach_env_runner(read, local_env_runner=group.num_remote_env_runners() == 0)


def assert_same_module(a: dict, b: dict, exact=True) -> None:
    for key in a:
        if key in ("module_ids", "mapping", "has_critic"):
            continue
        if exact or key in TABLES:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
