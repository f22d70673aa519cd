"""Suite-wide set-up: a temporary home directory, and a check that the real one is untouched.

Ray Tune and RLlib write into ``~/ray_results`` by default: Tune runs without a storage path,
and every ``Algorithm`` built outside Tune (``config.build_algo()``, ``Algorithm.from_checkpoint``,
also in the ``rllib evaluate`` subprocesses) creates a log directory there. Ray computes that
default from ``$HOME`` when it is imported, so ``HOME`` points at a temporary directory for the
whole session, before any test module imports Ray; subprocesses inherit it. The directory is
removed at the end, and the session fails if the real ``~/ray_results`` received what the tests
write: a new entry named like one in the temporary ``ray_results`` (timestamps aside). Other
processes on the machine (a campaign) may write there meanwhile; that is not the suite's doing.
"""

import os
import re
import shutil
import tempfile
from pathlib import Path

import pytest

REAL_RAY_RESULTS = Path(os.path.expanduser("~/ray_results"))


def _listing(path: Path):
    return sorted(p.name for p in path.iterdir()) if path.is_dir() else None


RAY_RESULTS_BEFORE = _listing(REAL_RAY_RESULTS)
TEST_HOME = Path(tempfile.mkdtemp(prefix="pytest-rllib-adaps-home-"))
os.environ["HOME"] = str(TEST_HOME)
os.environ.setdefault("RAY_DEDUP_LOGS", "0")
# Every test and subprocess starts its own Ray instance: without this, `ray.init()` joins a
# cluster that `ray start` left running on the machine (a campaign's), and fails when given
# num_cpus. Tests that want a cluster pass its address explicitly.
os.environ["RAY_ADDRESS"] = "local"
# One intra-op thread for torch in this process and the programs the tests start, as Ray gives
# its 1-CPU workers: the drivers here sample, learn and fit VAEs on small batches, where a
# second thread on a 2-core machine only competes with the Ray workers (identity tests: 10%).
os.environ.setdefault("OMP_NUM_THREADS", "1")


def pytest_unconfigure(config):
    import sys

    if "ray" in sys.modules:  # stop the session's Ray instance and its workers before the driver exits
        sys.modules["ray"].shutdown()
    shutil.rmtree(TEST_HOME, ignore_errors=True)


#: The date-time part of Ray's directory names (``PPO_bps_2026-12-07_13-45-46...``).
_TIMESTAMP = re.compile(r"_?\d{4}-\d{2}-\d{2}_\d{2}-\d{2}-\d{2}.*$")


def _stem(name: str) -> str:
    return _TIMESTAMP.sub("", name)


def leaked_entries(added, written_by_tests) -> list:
    """New entries of the real ~/ray_results named like what the tests wrote (timestamps aside).

    Names that are a timestamp alone (an Algorithm's logdir) say nothing about who wrote them;
    that Ray resolves its default directory into the temporary home is test_cli's check.
    """
    ours = {_stem(name) for name in written_by_tests} - {""}
    return sorted(name for name in added if _stem(name) in ours)


@pytest.fixture(scope="session", autouse=True)
def real_ray_results_untouched():
    """Fails the session (an error at the last test's teardown) if the tests' own results went
    into the real ~/ray_results instead of the temporary home's."""
    yield
    added = set(_listing(REAL_RAY_RESULTS) or []) - set(RAY_RESULTS_BEFORE or [])
    leaked = leaked_entries(added, _listing(TEST_HOME / "ray_results") or [])
    assert not leaked, f"the tests wrote into {REAL_RAY_RESULTS}: {leaked}"


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
