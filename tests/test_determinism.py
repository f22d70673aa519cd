"""The same seed gives the same identities, clusters and masks across runs."""

import numpy as np
from ray.rllib.algorithms.ppo import PPOConfig

import rllib_adaps
from rllib_adaps.callback import RESULT_KEY, foreach_learner


def run_once(seed):
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=1, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1)
        .debugging(seed=seed)
    )
    algo = rllib_adaps.configure_sharing(config, "adaps", pretrain_env_steps=300, identity_env_steps=300).build_algo()
    try:
        summary = algo.train()[RESULT_KEY]
        masks = foreach_learner(algo, lambda l: l.module["shared"].unwrapped().actor_masks.numpy().copy())[0]
        callback = next(c for c in algo.callbacks if isinstance(c, rllib_adaps.IdentityPretrainingCallback))
        return summary, masks, callback.result.identities
    finally:
        algo.stop()


def test_same_seed_same_clusters_and_masks(ray_local):
    a, b = run_once(7), run_once(7)
    assert a[0]["labels"] == b[0]["labels"] and a[0]["num_clusters"] == b[0]["num_clusters"]
    np.testing.assert_array_equal(a[1], b[1])
    np.testing.assert_allclose(a[2], b[2], rtol=1e-6, atol=1e-7)
