"""Reading the one engine module's tables and weights on Learners and EnvRunners (test helper).

Works on both paths: the module id is ``shared`` on the multi-agent path and ``default_policy``
on the fast path (``rllib_adaps.rllib.module_ids``); every view records which (``module_id``).
"""

import sys

import numpy as np
from ray import cloudpickle

from rllib_adaps.rllib.module_ids import engine_module, sharing_module_id
from rllib_adaps.rllib.shims import foreach_learner

# The readers run inside Learner and EnvRunner actors, which cannot import this test helper.
cloudpickle.register_pickle_by_value(sys.modules[__name__])

TABLES = ("agent_slice", "agent_mask", "agent_cluster", "mask_table")
#: A short VAE fit for tests that check where tables go, not how good the clusters are.
QUICK_FIT = {"vae": {"min_updates": 150, "epochs": 2}}
VIEW_KEYS = ("module_ids", "module_id", "mapping", "has_critic")


def module_id(config_or_algo) -> str:
    """The engine's module id of a run (``shared`` or, on the fast path, ``default_policy``)."""
    return sharing_module_id(config_or_algo)


def module_view(module) -> dict:
    """Tables and the actor's weights of one engine module, as numpy arrays."""
    module = module.unwrapped() if hasattr(module, "unwrapped") else module
    state = module.state_dict()
    view = {name: state[name].cpu().numpy().copy() for name in TABLES}
    view.update({k: v.detach().cpu().numpy().copy() for k, v in state.items() if k.startswith(("actor", "log_std"))})
    view["module_ids"] = None
    return view


def learner_views(algo) -> list:
    mid = module_id(algo)

    def read(learner):
        view = module_view(learner.module[mid])
        view["module_ids"] = sorted(learner.module.keys())
        view["module_id"] = mid
        return view

    return foreach_learner(algo, read)


def runner_views(algo, evaluation=False) -> list:
    group = algo.eval_env_runner_group if evaluation else algo.env_runner_group
    mid = module_id(algo)

    def read(er):
        module = engine_module(er, mid)
        view = module_view(module)
        # A multi-agent EnvRunner holds a MultiRLModule; the fast path's EnvRunner the module itself.
        view["module_ids"] = sorted(er.module.keys()) if hasattr(er.module, "keys") else [mid]
        view["module_id"] = mid
        if er.config.is_multi_agent:
            view["mapping"] = [er.config.policy_mapping_fn(a, None) for a in module.agent_ids]
        else:  # every agent slot is sampled by the one module
            view["mapping"] = [mid] * len(module.agent_ids)
        view["has_critic"] = hasattr(module, "critic")
        return view

    # The remote EnvRunners; the local one when sampling happens there (num_env_runners=0).
    return group.foreach_env_runner(read, local_env_runner=group.num_remote_env_runners() == 0)


def assert_same_module(a: dict, b: dict, exact=True) -> None:
    for key in a:
        if key in VIEW_KEYS:
            continue
        if exact or key in TABLES:
            np.testing.assert_array_equal(a[key], b[key], err_msg=key)
        else:
            np.testing.assert_allclose(a[key], b[key], rtol=1e-6, atol=1e-7, err_msg=key)
