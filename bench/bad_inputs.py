"""Bad inputs a user could make, and what each gets: the message and the exit code or exception.

    python bench/bad_inputs.py [--out docs/results/bad_inputs.txt]

Python calls run in this process; CLI cases run ``rllib`` in a subprocess, as a user would. The
checkpoint cases train nothing: they need a checkpoint, so pass ``--checkpoint DIR`` (an
Algorithm checkpoint of this package, e.g. from the README's main job) to include them. Nothing
here starts Ray except that main-job checkpoint's evaluation, which does not either.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
GOOD = """
exp:
  run: PPO
  env: bps
  stop: {training_iteration: 1}
  sharing: {method: adaps}
  config: {env_config: {preset: v1}}
"""


def python_cases():
    import gymnasium as gym
    import numpy as np
    from pettingzoo import ParallelEnv
    from ray.rllib.algorithms.ppo import PPOConfig
    from ray.rllib.core.rl_module.rl_module import RLModuleSpec
    from ray.tune.registry import register_env

    import rllib_adaps
    from rllib_adaps import AdaPSModule, AgentModuleMapping, SharingCallback, configure_sharing
    from rllib_adaps.envs import OrderedParallelEnv, make_parallel_env

    class BoxActions(ParallelEnv):
        metadata = {"name": "box_actions"}
        possible_agents = ["a", "b", "c"]

        def observation_space(self, agent):
            return gym.spaces.Box(-1, 1, (3,), np.float32)

        def action_space(self, agent):
            return gym.spaces.Box(-1, 1, (2,), np.float32)

        def reset(self, seed=None, options=None):
            self.agents = list(self.possible_agents)
            return {a: np.zeros(3, np.float32) for a in self.agents}, {a: {} for a in self.agents}

        def step(self, actions):
            for agent, action in actions.items():
                assert action.shape == self.action_space(agent).shape  # mpe2's envs read it: an int would fail here
            obs = {a: np.zeros(3, np.float32) for a in self.agents}
            return obs, dict.fromkeys(obs, 0.0), dict.fromkeys(obs, False), dict.fromkeys(obs, False), {a: {} for a in obs}

    class Unbounded(BoxActions):
        def action_space(self, agent):
            return gym.spaces.Box(-np.inf, np.inf, (2,), np.float32)

    class MixedKinds(BoxActions):
        def action_space(self, agent):
            return gym.spaces.Discrete(3) if agent == "a" else super().action_space(agent)

    class BoxSizes(BoxActions):
        def action_space(self, agent):
            return gym.spaces.Box(-1, 1, (3 if agent == "a" else 2,), np.float32)

    class DictObs(BoxActions):
        def observation_space(self, agent):
            return gym.spaces.Dict({"x": gym.spaces.Box(-1, 1, (3,), np.float32)})

        def action_space(self, agent):
            return gym.spaces.Discrete(3)

    class Sizes(BoxActions):
        def observation_space(self, agent):
            return gym.spaces.Box(-1, 1, (3 if agent == "a" else 5,), np.float32)

        def action_space(self, agent):
            return gym.spaces.Discrete(3)

    register_env("unbounded_actions", lambda cfg: OrderedParallelEnv(Unbounded()))
    register_env("mixed_kinds", lambda cfg: OrderedParallelEnv(MixedKinds()))
    register_env("box_sizes", lambda cfg: OrderedParallelEnv(BoxSizes()))
    register_env("dict_obs", lambda cfg: OrderedParallelEnv(DictObs()))
    register_env("sizes", lambda cfg: OrderedParallelEnv(Sizes()))

    def bps(**env_config):
        return PPOConfig().environment("bps", env_config=env_config or {"preset": "v1"})

    env = make_parallel_env("bps", {"preset": "v1"})
    agents = list(env.possible_agents)
    obs_space = gym.spaces.Box(-np.inf, np.inf, (int(env.observation_space(agents[0]).shape[0]) + 1,), np.float32)

    def manual(model_config):
        spec = RLModuleSpec(module_class=AdaPSModule, observation_space=obs_space, action_space=env.action_space(agents[0]),
                            model_config=model_config)
        return spec.build()

    return [
        ("configure_sharing: unknown method 'adapss'", lambda: configure_sharing(bps(), "adapss")),
        ("configure_sharing: method None", lambda: configure_sharing(bps(), None)),
        ("configure_sharing: option typo n_clusters", lambda: configure_sharing(bps(), "adaps", n_clusters=3)),
        ("configure_sharing: option of another method (fups, num_clusters)", lambda: configure_sharing(bps(), "fups", num_clusters=3)),
        ("configure_sharing: mask_threshold 1.5", lambda: configure_sharing(bps(), "adaps", mask_threshold=1.5)),
        ("configure_sharing: mask_threshold '0.3' (a string)", lambda: configure_sharing(bps(), "adaps", mask_threshold="0.3")),
        ("configure_sharing: num_clusters 0", lambda: configure_sharing(bps(), "seps", num_clusters=0)),
        ("configure_sharing: num_clusters 40 > 15 agents", lambda: configure_sharing(bps(), "seps", num_clusters=40)),
        ("configure_sharing: num_clusters 2.5", lambda: configure_sharing(bps(), "seps", num_clusters=2.5)),
        ("configure_sharing: identity_env_steps -5", lambda: configure_sharing(bps(), "adaps", identity_env_steps=-5)),
        ("configure_sharing: flat VAE option z_dim", lambda: configure_sharing(bps(), "adaps", z_dim=4)),
        ("configure_sharing: vae={'zdim': 3}", lambda: configure_sharing(bps(), "adaps", vae={"zdim": 3})),
        ("configure_sharing: vae=3", lambda: configure_sharing(bps(), "adaps", vae=3)),
        ("configure_sharing: vae identity_leaks 'ignore'", lambda: configure_sharing(bps(), "adaps", vae={"identity_leaks": "ignore"})),
        ("configure_sharing: vae reconstruct []", lambda: configure_sharing(bps(), "adaps", vae={"reconstruct": []})),
        ("configure_sharing: masked_networks ['policy']", lambda: configure_sharing(bps(), "adaps", masked_networks=["policy"])),
        ("configure_sharing: masked_networks 'actor' (a string)", lambda: configure_sharing(bps(), "snp", masked_networks="actor")),
        ("configure_sharing: pruning_rate 1.0", lambda: configure_sharing(bps(), "snp", pruning_rate=1.0)),
        ("configure_sharing: fast_path 'yes'", lambda: configure_sharing(bps(), "fups", fast_path="yes")),
        ("configure_sharing: a dict instead of an AlgorithmConfig", lambda: configure_sharing({"env": "bps"}, "fups")),
        ("configure_sharing: no env", lambda: configure_sharing(PPOConfig(), "fups")),
        ("configure_sharing: unregistered env 'bpss'", lambda: configure_sharing(PPOConfig().environment("bpss"), "fups")),
        ("configure_sharing: env_config key typo 'presett'", lambda: configure_sharing(bps(presett="v1"), "fups")),
        ("configure_sharing: env_config value preset 'v9'", lambda: configure_sharing(bps(preset="v9"), "fups")),
        ("configure_sharing: unbounded Box actions", lambda: configure_sharing(PPOConfig().environment("unbounded_actions"), "adaps")),
        ("configure_sharing: agents mixing Discrete and Box actions", lambda: configure_sharing(PPOConfig().environment("mixed_kinds"), "fups")),
        ("configure_sharing: Box actions of two sizes, fast_path=False",
         lambda: configure_sharing(PPOConfig().environment("box_sizes"), "adaps", fast_path=False)),
        ("configure_sharing: use_lstm with fast_path=True",
         lambda: configure_sharing(bps().rl_module(model_config={"use_lstm": True}), "fups", fast_path=True)),
        ("configure_sharing: critic_input 'state' for an env without state()",
         lambda: configure_sharing(bps().rl_module(model_config={"critic_input": "state"}), "fups")),
        ("configure_sharing: critic_input 'everything'",
         lambda: configure_sharing(bps().rl_module(model_config={"critic_input": "everything"}), "fups")),
        ("configure_sharing: Dict observations", lambda: configure_sharing(PPOConfig().environment("dict_obs"), "fups")),
        ("configure_sharing: different obs sizes, pad_observations=False",
         lambda: configure_sharing(PPOConfig().environment("sizes"), "fups", pad_observations=False)),
        ("configure_sharing: automatic K with 3 agents needs N >= 3 (2 agents here)",
         lambda: configure_sharing(bps(agents_per_type=[1, 1]), "adaps")),
        ("configure_sharing: sharing option in model_config", lambda: configure_sharing(bps().rl_module(model_config={"mask_threshold": 0.8}), "adaps")),
        ("configure_sharing: model_config lstm_use_prev_action=True",
         lambda: configure_sharing(bps().rl_module(model_config={"use_lstm": True, "lstm_use_prev_action": True}), "fups")),
        ("configure_sharing: model_config fcnet_hidens (typo)", lambda: configure_sharing(bps().rl_module(model_config={"fcnet_hidens": [8]}), "fups")),
        ("SharingCallback(method='adaps')", lambda: SharingCallback(method="adaps")),
        ("AdaPSModule without agent_ids", lambda: manual({})),
        ("AdaPSModule with an SNP-PS option (pruning_rate)", lambda: manual({"agent_ids": agents, "pruning_rate": 0.3})),
        ("AdaPSModule with mask_threshold 0", lambda: manual({"agent_ids": agents, "mask_threshold": 0.0})),
        ("AgentModuleMapping: an agent that appears after set-up",
         lambda: AgentModuleMapping({"agent_0": "shared"})("agent_9", None)),
        ("rllib_adaps.no_such_name", lambda: rllib_adaps.no_such_name),
    ]


def cli_cases(tmp: Path, checkpoint: str | None):
    def file(text, name="exp.yaml"):
        path = tmp / name
        path.write_text(textwrap.dedent(text))
        return str(path)

    good = file(GOOD)
    cases = [
        ("rllib (no command)", []),
        ("rllib train file: missing file", ["train", "file", str(tmp / "nope.yaml")]),
        ("rllib train file: a .txt file", ["train", "file", file("x", "exp.txt")]),
        ("rllib train file: YAML syntax error", ["train", "file", file("exp:\n  run: PPO\n  config: {lr: 0.1\n", "bad.yaml")]),
        ("rllib train file: --stop '{\"env_steps\": 40000}'", ["train", "file", good, "--stop", '{"env_steps": 40000}']),
        ("rllib train file: --stop not JSON", ["train", "file", good, "--stop", "{training_iteration: 2}"]),
        ("rllib train file: --stop value a string", ["train", "file", good, "--stop", '{"training_iteration": "10"}']),
        ("rllib train file: stop key typo in the file", ["train", "file", file(GOOD.replace("training_iteration", "training_iterations"), "stop.yaml")]),
        ("rllib train file: unknown config key lrr", ["train", "file", file(GOOD.replace("preset: v1}", "preset: v1}, lrr: 0.1"), "cfg.yaml")]),
        ("rllib train file: sharing method typo", ["train", "file", file(GOOD.replace("method: adaps", "method: adapss"), "m.yaml")]),
        ("rllib train file: mask_treshold among other options",
         ["train", "file", file(GOOD.replace("method: adaps", "method: adaps, num_clusters: 3, mask_treshold: 0.3"), "o.yaml")]),
        ("rllib train file: vae option typo", ["train", "file", file(GOOD.replace("method: adaps", "method: adaps, vae: {zdim: 4}"), "v.yaml")]),
        ("rllib train file: --resume with --stop", ["train", "file", good, "--resume", "--stop", '{"training_iteration": 1}']),
        ("rllib train file: --checkpoint-freq abc", ["train", "file", good, "--checkpoint-freq", "abc"]),
        ("rllib train file: --num-samples 0", ["train", "file", good, "--num-samples", "0"]),
        ("rllib evaluate: missing path", ["evaluate", str(tmp / "nope")]),
        ("rllib evaluate: a directory that is no checkpoint", ["evaluate", str(tmp)]),
        ("rllib evaluate: --mode bogus", ["evaluate", str(tmp), "--mode", "bogus"]),
        ("rllib evaluate: --episodes 0", ["evaluate", str(tmp), "--episodes", "0"]),
    ]
    if checkpoint:
        from rllib_adaps.rllib.checkpoints import read_checkpoint

        trial = str(Path(checkpoint).parent)
        other = "lbf" if read_checkpoint(checkpoint).env != "lbf" else "crware"
        cases += [
            ("rllib evaluate: a trial directory", ["evaluate", trial]),
            (f"rllib evaluate: --env {other} (not the checkpoint's env)", ["evaluate", checkpoint, "--env", other]),
            ("rllib evaluate: --env unknown", ["evaluate", checkpoint, "--env", "lbff"]),
        ]
    return cases


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--checkpoint", default=None, help="an Algorithm checkpoint of this package (default: none)")
    parser.add_argument("--out", default=None, help="also write the list to this file (default: print only)")
    args = parser.parse_args()
    lines = []
    for name, call in python_cases():
        try:
            call()
            lines.append(f"- {name}: no error")
        except Exception as err:  # noqa: BLE001 (what a user sees is the point)
            lines.append(f"- {name}: {type(err).__name__}: {err}")
        print(lines[-1], flush=True)
    env = {k: v for k, v in os.environ.items() if k not in ("RAY_DEDUP_LOGS",)}
    with tempfile.TemporaryDirectory() as tmp:
        for name, argv in cli_cases(Path(tmp), args.checkpoint):
            proc = subprocess.run([sys.executable, "-m", "rllib_adaps.app.cli", *argv], capture_output=True, text=True,
                                  cwd=ROOT, env=env, timeout=300)
            err = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("[rllib-adaps]")]
            message = " ".join(err[-2:]) if err else proc.stdout.strip().splitlines()[-1:]
            traceback = " (TRACEBACK)" if "Traceback" in proc.stderr else ""
            lines.append(f"- {name}: exit {proc.returncode}{traceback}: {message}")
            print(lines[-1], flush=True)
    if args.out:
        Path(args.out).write_text("# python bench/bad_inputs.py " + " ".join(sys.argv[1:]) + "\n" + "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
