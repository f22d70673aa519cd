#!/usr/bin/env python
"""Random-action env throughput of this package's envs, side by side with their baselines.

Every env is timed by the same loop (see ``time_one_repeat``): reset with a seed, step with
pre-drawn random actions, reset whenever an episode ends, time with ``perf_counter``, best
of ``--repeats``. An env and its baseline alternate repeat by repeat, so a change in machine
speed during the run hits both. Constructing the env is not timed; resets inside the loop are.

| env    | ours                                 | baseline                         | target      |
|--------|--------------------------------------|----------------------------------|-------------|
| bps    | BlindParticleSpread v2 (30 agents)   | none (absolute)                  | >= 10000 /s |
| bps    | BlindParticleSpread v2 (30 agents)   | mpe2 simple_spread_v3, N=30      | >= 20x      |
| lbf    | PersistentLevelForaging 10x10 8p 4f  | lbforaging ForagingEnv, same     | >= 0.9x     |
| crware | ColouredWarehouse tiny-4ag, small-8ag, medium-16ag | rware Warehouse, same | >= 0.8x |

Usage: ``python bench/env_throughput.py [--steps 20000] [--envs bps,lbf,crware]``.
Exits with status 1 when any row fails its target.
"""

from __future__ import annotations

import argparse
import os
import platform
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

# Run as a script from a checkout: make the package importable without installing it.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

ALL_ENVS = ("bps", "lbf", "crware")
#: How often (in steps) the loop looks at the clock to honour ``--max-seconds``.
CLOCK_CHECK_EVERY = 64


@dataclass
class Stepper:
    """One env behind a uniform interface, so that every env is timed by the same loop."""

    name: str
    num_agents: int
    num_actions: int
    reset: Callable[[int | None], Any]
    #: Takes one action per agent (Python ints); returns True when the episode is over.
    step: Callable[[list[int]], bool]


def parallel_env_stepper(name: str, env: Any) -> Stepper:
    """A PettingZoo ParallelEnv: actions go in as a dict, the episode ends when no agent is left."""

    def reset(seed: int | None) -> None:
        env.reset(seed=seed)

    def step(actions: list[int]) -> bool:
        env.step(dict(zip(env.agents, actions)))
        return not env.agents

    first_agent = env.possible_agents[0]
    return Stepper(name, len(env.possible_agents), env.action_space(first_agent).n, reset, step)


def gym_multi_agent_stepper(name: str, env: Any) -> Stepper:
    """An upstream gymnasium env with a Tuple action space and per-agent result lists."""

    def reset(seed: int | None) -> None:
        env.reset(seed=seed)

    def step(actions: list[int]) -> bool:
        _, _, terminated, truncated, _ = env.step(actions)
        return bool(np.all(terminated)) or bool(np.all(truncated))

    return Stepper(name, len(env.action_space), env.action_space[0].n, reset, step)


def time_one_repeat(
    stepper: Stepper, actions: list[list[int]], seed: int, max_seconds: float
) -> float:
    """Steps/s over ``actions`` (or as many as fit in ``max_seconds``), resetting on episode end."""
    stepper.reset(seed)
    step, reset = stepper.step, stepper.reset
    steps_done = len(actions)
    start = time.perf_counter()
    deadline = start + max_seconds
    for index, row in enumerate(actions, start=1):
        if step(row):
            reset(None)
        if index % CLOCK_CHECK_EVERY == 0 and time.perf_counter() > deadline:
            steps_done = index
            break
    return steps_done / (time.perf_counter() - start)


def best_steps_per_second(
    steppers: list[Stepper], num_steps: int, repeats: int, max_seconds: float
) -> list[float]:
    """Best-of-``repeats`` steps/s of each stepper, the steppers alternating repeat by repeat."""
    rng = np.random.default_rng(0)
    action_tables = [
        rng.integers(0, stepper.num_actions, size=(num_steps, stepper.num_agents)).tolist()
        for stepper in steppers
    ]
    best = [0.0] * len(steppers)
    for repeat in range(repeats):
        for index, (stepper, actions) in enumerate(zip(steppers, action_tables)):
            best[index] = max(best[index], time_one_repeat(stepper, actions, repeat, max_seconds))
    return best


@dataclass
class Row:
    env: str
    ours: float | None
    baseline: float | None
    target: str
    passed: bool | None  # None: could not be measured

    @property
    def ratio(self) -> float | None:
        if self.ours is None or self.baseline is None:
            return None
        return self.ours / self.baseline


def skipped_row(env: str, target: str, why: str) -> Row:
    print(f"skip {env}: {why}")
    return Row(env, None, None, target, None)


def describe_error(error: BaseException) -> str:
    return f"{type(error).__name__}: {error}".splitlines()[0]


def compare_with_baseline(
    env: str, ours: Stepper, baseline: Stepper, min_ratio: float, args: argparse.Namespace
) -> Row:
    ours_rate, baseline_rate = best_steps_per_second(
        [ours, baseline], args.steps, args.repeats, args.max_seconds
    )
    passed = ours_rate >= min_ratio * baseline_rate
    return Row(env, ours_rate, baseline_rate, f">= {min_ratio:g}x", passed)


def bps_rows(args: argparse.Namespace) -> list[Row]:
    absolute_target = 10_000.0
    min_ratio = 20.0
    try:
        from rllib_adaps.envs.bps import BlindParticleSpread
    except Exception as error:  # a module still being written may fail in any way
        why = f"rllib_adaps.envs.bps does not import yet ({describe_error(error)})"
        return [skipped_row("bps-v2 (30 ag)", f">= {absolute_target:.0f}/s", why)]
    ours = parallel_env_stepper("bps", BlindParticleSpread.from_config({"preset": "v2"}))
    try:
        from mpe2 import simple_spread_v3
    except Exception as error:
        print(f"no mpe2 baseline ({describe_error(error)}); `pip install mpe2` to compare")
        (ours_rate,) = best_steps_per_second([ours], args.steps, args.repeats, args.max_seconds)
        passed = ours_rate >= absolute_target
        return [Row("bps-v2 (30 ag)", ours_rate, None, f">= {absolute_target:.0f}/s", passed)]
    # mpe2's spread: N agents, N landmarks, collisions, observes other agents; BPS-like in size.
    mpe_env = simple_spread_v3.parallel_env(
        N=30, local_ratio=0.5, max_cycles=50, continuous_actions=False
    )
    baseline = parallel_env_stepper("mpe2 simple_spread N=30", mpe_env)
    row = compare_with_baseline("bps-v2 vs mpe2 spread N=30", ours, baseline, min_ratio, args)
    absolute = Row(
        "bps-v2 (30 ag)", row.ours, None, f">= {absolute_target:.0f}/s", row.ours >= absolute_target
    )
    return [absolute, row]


def lbf_rows(args: argparse.Namespace) -> list[Row]:
    min_ratio = 0.9
    env_name = "lbf 10x10 8p 4f"
    try:
        from rllib_adaps.envs.lbf import PersistentLevelForaging
    except Exception as error:
        why = f"rllib_adaps.envs.lbf does not import yet ({describe_error(error)})"
        return [skipped_row(env_name, f">= {min_ratio:g}x", why)]
    from lbforaging.foraging import ForagingEnv

    ours_env = PersistentLevelForaging.from_config(
        {"grid_size": 10, "levels": [1, 1, 2, 2, 3, 3, 4, 4], "foods": 4}
    )
    baseline_env = ForagingEnv(
        players=8,
        # The same per-agent levels as ours (upstream shuffles them at each reset), so both
        # envs spawn the same food levels and episodes end at the same rate.
        min_player_level=[1, 1, 2, 2, 3, 3, 4, 4],
        max_player_level=[1, 1, 2, 2, 3, 3, 4, 4],
        min_food_level=1,
        max_food_level=None,
        field_size=(10, 10),
        max_num_food=4,
        sight=10,
        max_episode_steps=50,
        force_coop=False,
    )
    return [
        compare_with_baseline(
            env_name,
            parallel_env_stepper("lbf", ours_env),
            gym_multi_agent_stepper("ForagingEnv", baseline_env),
            min_ratio,
            args,
        )
    ]


def crware_rows(args: argparse.Namespace) -> list[Row]:
    min_ratio = 0.8
    tasks = (("tiny-4ag", "tiny", 4), ("small-8ag", "small", 8), ("medium-16ag", "medium", 16))
    try:
        from rllib_adaps.envs.coloured_rware import ColouredWarehouse
    except Exception as error:
        why = f"rllib_adaps.envs.coloured_rware does not import yet ({describe_error(error)})"
        return [skipped_row("crware", f">= {min_ratio:g}x", why)]
    import gymnasium
    import rware  # noqa: F401  (registers the rware-* ids whose kwargs we reuse)
    from rware.warehouse import Warehouse

    rows = []
    for task, size, num_agents in tasks:
        # Build the plain Warehouse exactly as gymnasium.make would, minus gymnasium's wrappers.
        baseline_env = Warehouse(**gymnasium.spec(f"rware-{size}-{num_agents}ag-v2").kwargs)
        ours_env = ColouredWarehouse.from_config({"task": task})
        rows.append(
            compare_with_baseline(
                f"crware {task}",
                parallel_env_stepper(task, ours_env),
                gym_multi_agent_stepper(f"rware {size} {num_agents}ag", baseline_env),
                min_ratio,
                args,
            )
        )
    return rows


ROW_BUILDERS: dict[str, Callable[[argparse.Namespace], list[Row]]] = {
    "bps": bps_rows,
    "lbf": lbf_rows,
    "crware": crware_rows,
}


def format_rate(rate: float | None) -> str:
    return "-" if rate is None else f"{rate:,.0f}"


def print_table(rows: list[Row]) -> None:
    header = ("env", "ours steps/s", "baseline steps/s", "ratio", "target", "result")
    lines = [
        (
            row.env,
            format_rate(row.ours),
            format_rate(row.baseline),
            "-" if row.ratio is None else f"{row.ratio:.2f}x",
            row.target,
            {True: "PASS", False: "FAIL", None: "SKIP"}[row.passed],
        )
        for row in rows
    ]
    widths = [max(len(str(cell)) for cell in column) for column in zip(header, *lines)]
    for cells in [header, tuple("-" * width for width in widths), *lines]:
        print("  ".join(str(cell).ljust(width) for cell, width in zip(cells, widths)).rstrip())


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=20_000, help="env steps per timed repeat")
    parser.add_argument(
        "--envs", default=",".join(ALL_ENVS), help=f"comma-separated subset of {','.join(ALL_ENVS)}"
    )
    parser.add_argument("--repeats", type=int, default=3, help="timed repeats; the best counts")
    parser.add_argument(
        "--max-seconds",
        type=float,
        default=5.0,
        help="cut a repeat short after this long (slow baselines), rate from the steps done",
    )
    args = parser.parse_args(argv)
    args.env_list = [name.strip() for name in args.envs.split(",") if name.strip()]
    unknown = sorted(set(args.env_list) - set(ALL_ENVS))
    if unknown:
        parser.error(f"unknown env(s) {unknown}; choose from {list(ALL_ENVS)}")
    if args.steps < 1 or args.repeats < 1 or args.max_seconds <= 0:
        parser.error("--steps and --repeats must be >= 1 and --max-seconds > 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    print(
        f"python {platform.python_version()}, numpy {np.__version__}, {os.cpu_count()} cpus; "
        f"{args.steps} steps x best of {args.repeats} (at most {args.max_seconds:g} s a repeat)"
    )
    rows: list[Row] = []
    for name in args.env_list:
        rows.extend(ROW_BUILDERS[name](args))
    print()
    print_table(rows)
    return 1 if any(row.passed is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
