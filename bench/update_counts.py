"""Optimizer steps per network in one PPO iteration, per sharing method (the fairness check).

    python bench/update_counts.py > docs/results/update_counts.txt

BPS v1 (15 agents), PPO with the tuned examples' settings: batch 2,000 env steps, minibatch
500, 4 epochs. Steps are counted with torch's global optimizer-step hook, per optimizer (one
per network on releases that had one module per network; one for the engine's single module,
whose every step updates every slice that has samples in the minibatch). AdaPS/SePS are run
without pre-training (counts do not depend on the tables). Also ``a2c_settings``.
"""

import collections

import ray
from ray.rllib.algorithms.ppo import PPOConfig
from torch.optim.optimizer import register_optimizer_step_post_hook

import rllib_adaps


def main() -> None:
    ray.init(address="local", num_cpus=2, include_dashboard=False, log_to_driver=False, configure_logging=False)
    rllib_adaps.register_envs()
    counts = collections.Counter()
    register_optimizer_step_post_hook(lambda opt, args, kwargs: counts.update([id(opt)]))
    print("BPS v1 (15 agents), PPO batch 2000 env steps, minibatch 500, 4 epochs; one train() each")
    print(f"{'method':22} {'optimizers':>10} {'steps per optimizer (min..max)':>32}")
    for method in rllib_adaps.METHODS + ("fups+a2c_settings", "nops+a2c_settings"):
        name, _, a2c = method.partition("+")
        config = (
            PPOConfig()
            .environment("bps", env_config={"preset": "v1"})
            .env_runners(num_env_runners=0, num_envs_per_env_runner=8)
            .training(train_batch_size_per_learner=2000, minibatch_size=500, num_epochs=4)
            .debugging(seed=0)
        )
        options = {"shared_training_env_steps": 10**12, "num_clusters": 3} if name in ("adaps", "seps") else {}
        config = rllib_adaps.configure_sharing(config, name, **options)
        if a2c:
            config = rllib_adaps.a2c_settings(config)
        algo = config.build_algo()
        counts.clear()
        algo.train()
        algo.stop()
        steps = sorted(counts.values())
        print(f"{method:22} {len(steps):>10} {f'{steps[0]}..{steps[-1]}':>32}")


if __name__ == "__main__":
    main()
