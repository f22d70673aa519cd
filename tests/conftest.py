import os

import pytest

os.environ.setdefault("RAY_DEDUP_LOGS", "0")


@pytest.fixture(scope="module")
def ray_local():
    """A real local Ray instance (2 CPUs, like CI), started once and reused by training tests.

    Tests that need another Ray set-up (a multi-node cluster) shut it down; the next test
    using this fixture starts it again.
    """
    import ray

    import rllib_adaps

    if not ray.is_initialized():
        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
        rllib_adaps.register_envs()  # registrations live in the Ray instance they were made in
    yield ray
