"""The Tune driver: one Tune experiment per (scenario, method), named by ``Protocol.name``, each a
grid over the seeds.

Every trial is a normal Tune trial (result.json, progress.csv, TensorBoard files, checkpoints)
under ``--storage``, so the campaign needs no reader of its own and survives the driver.
Experiments run one after another; on a cluster the seeds of one experiment run at once.
``--resume`` restores unfinished experiments with Tune's own ``Tuner.restore`` and skips
finished ones; without it an experiment already in storage is left alone (listed again at the
end), so that a second driver never trains into another's experiment. Ctrl-C: Tune saves the
trials, and the driver stops without starting the next experiment or aggregating.
"""

from __future__ import annotations

import argparse
import itertools
import os
from pathlib import Path

from .protocol import SCENARIOS, Protocol, check_seeds_independent


def run(args: argparse.Namespace) -> bool:
    """Runs (or resumes) every experiment; False when interrupted (Ctrl-C)."""
    import ray
    from ray import tune

    import rllib_adaps

    os.environ.setdefault("PYTHONHASHSEED", "0")  # RLlib iterates sets of agent ids: one seed, one run
    ray.init(address=args.address, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
    rllib_adaps.register_envs()
    seeds = [int(s) for s in args.seeds.split(",")]
    check_seeds_independent(seeds, args.num_env_runners, args.envs_per_runner)
    storage = str(Path(args.storage).resolve())
    skipped = []  # experiments that exist in storage, left alone without --resume
    try:
        for scenario, method in itertools.product(args.scenarios, args.methods):
            protocol = Protocol(scenario, method, args.algorithm, args.num_env_runners, args.envs_per_runner,
                                args.rollout_steps, args.num_epochs, args.plain_loss, args.rllib_a2c,
                                args.mask_threshold, args.env_steps or SCENARIOS[scenario]["env_steps"])
            name = protocol.name
            path = Path(storage) / name
            config = protocol.algorithm_config()
            config.debugging(seed=tune.grid_search(seeds))
            if path.exists() and tune.Tuner.can_restore(str(path)):
                if not args.resume:
                    print(f"{name}: exists at {path}; pass --resume to continue it, or choose another --storage")
                    skipped.append(name)
                    continue
                tuner = tune.Tuner.restore(str(path), trainable=config.algo_class, param_space=config, resume_errored=True)
            else:
                stop = {"num_env_steps_sampled_lifetime": args.env_steps or SCENARIOS[scenario]["env_steps"]}
                tuner = tune.Tuner(
                    config.algo_class,
                    param_space=config,
                    run_config=tune.RunConfig(
                        name=name, storage_path=storage, stop=stop, verbose=1,
                        checkpoint_config=tune.CheckpointConfig(checkpoint_frequency=args.checkpoint_every, checkpoint_at_end=True,
                                                                num_to_keep=2),
                    ),
                )
            print(f"{name}: {len(seeds)} seeds", flush=True)
            results = tuner.fit()
            # Tune ends fit() quietly on Ctrl-C and marks every trial TERMINATED; only a trial that
            # met the stop criterion has done=True in its last result. Stop here rather than start
            # the next experiment; --resume continues.
            finished = sum(1 for r in results if r.error is None and (r.metrics or {}).get("done"))
            errored = sum(1 for r in results if r.error is not None)
            if finished + errored < len(results):
                print(f"{name}: interrupted ({finished} of {len(results)} trials finished); "
                      "run again with --resume to continue", flush=True)
                return False
        if skipped:  # repeated at the end: the line at the start scrolls away under Tune's tables
            print(f"Skipped, already in {storage} (pass --resume to continue them): {', '.join(skipped)}", flush=True)
        return True
    finally:
        ray.shutdown()
