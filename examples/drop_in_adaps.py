"""A plain RLlib multi-agent PPO config on a PettingZoo env, then the few lines that make it AdaPS.

    python examples/drop_in_adaps.py               # small default budget (a few minutes)
    python examples/drop_in_adaps.py --iters 50
"""

import argparse

import ray
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps  # registers the envs "lbf", "crware", "bps"

parser = argparse.ArgumentParser()
parser.add_argument("--iters", type=int, default=8)
parser.add_argument("--method", default="adaps", choices=rllib_adaps.METHODS)
parser.add_argument("--num-env-runners", type=int, default=1, help="0: sample in this process")
args = parser.parse_args()

# 1. Your usual multi-agent PPO config (here Blind-particle Spread: 15 agents, 3 hidden types).
config = (
    PPOConfig()
    .environment("bps", env_config={"preset": "v1"})
    .env_runners(num_env_runners=args.num_env_runners, num_envs_per_env_runner=8)
    .training(lr=3e-4, entropy_coeff=0.01, train_batch_size_per_learner=2000, minibatch_size=500, num_epochs=4)
    .rl_module(model_config={"fcnet_hiddens": [64, 64]})
)

# 2. The drop-in: one shared AdaPSModule; at the start of training, identities are fitted on
#    1,000 env steps of the initial policy's transitions, agents are clustered (K chosen
#    automatically) and each cluster gets its own neuron mask.
config = rllib_adaps.configure_sharing(config, args.method, identity_env_steps=1_000)

ray.init(num_cpus=2, include_dashboard=False)
algo = config.build_algo()
for i in range(args.iters):
    result = algo.train()
    pre = result.get("identity_pretraining", {})
    print(
        f"iter {i + 1}: env steps {result['env_runners']['num_env_steps_sampled_lifetime']:>7}, "
        f"return {result['env_runners'].get('episode_return_mean', float('nan')):8.2f}"
        + (f", K={pre['num_clusters']} clusters {pre['cluster_sizes']}, ARI vs true types {pre.get('adjusted_rand_index'):.2f}" if pre.get("done") else "")
    )
algo.stop()
