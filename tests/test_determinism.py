"""The same seed gives the same identities, clusters and masks across runs (separate processes).

RLlib iterates sets of agent ids, so runs are reproducible only with a fixed PYTHONHASHSEED
(the `rllib` command sets it for the Ray instance it starts).
"""

import json
import os
import subprocess
import sys

RUN = """
import hashlib, json, numpy as np, ray
from ray.rllib.algorithms.ppo import PPOConfig
import rllib_adaps
from rllib_adaps.rllib.module_ids import engine_module
from rllib_adaps.rllib.shims import foreach_learner
ray.init(num_cpus=1, include_dashboard=False, log_to_driver=False)
config = (PPOConfig().environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
          .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
          .training(train_batch_size_per_learner=300, minibatch_size=150, num_epochs=1).debugging(seed=7))
algo = rllib_adaps.configure_sharing(config, "adaps", shared_training_env_steps=300, identity_env_steps=300,
                                     vae={"min_updates": 300, "epochs": 2}).build_algo()
summary = algo.train()["identity_pretraining"]
masks = foreach_learner(algo, lambda l: engine_module(l).mask_table.numpy().copy())[0]
callback = next(c for c in algo.callbacks if isinstance(c, rllib_adaps.SharingCallback))
print("RESULT " + json.dumps({"labels": summary["labels"], "masks": hashlib.md5(masks.tobytes()).hexdigest(),
      "identities": np.round(callback.result.identities, 6).tolist()}))
algo.stop()
"""


def start():
    env = {**os.environ, "PYTHONHASHSEED": "0"}
    return subprocess.Popen([sys.executable, "-c", RUN], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def result(proc):
    stdout, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 0, stderr[-3000:]
    line = next(l for l in stdout.splitlines() if l.startswith("RESULT "))
    return json.loads(line[len("RESULT "):])


def test_same_seed_same_clusters_and_masks_across_processes():
    first, second = start(), start()  # two independent processes (and Ray instances) at once
    a, b = result(first), result(second)
    assert a["labels"] == b["labels"]
    assert a["masks"] == b["masks"]
    assert a["identities"] == b["identities"]
