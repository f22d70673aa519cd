"""What every run of the campaign is trained with and measured by, fixed before any run.

Settings are equal for every method (``SCENARIOS``, ``ALGORITHMS``): the same PPO (or A2C)
hyper-parameters, network (64x64), env-step budget and stop criterion, so that a difference in
the statistics is the method's. The identity collection of AdaPS and SePS counts toward that
budget (it is sampled env steps). ``Protocol`` is one (scenario, method) under these settings,
with the knobs of the cause experiments; the seed is left to Tune's grid.

Protocol 2 (campaign v2): every run measures test returns (``TEST_RETURNS``: 20 episodes,
greedy and sampled, at the start, every twentieth of the budget and at its end); A2C is the
reference code's (``a2c_settings(reference=True)``; RLlib's variant is the ``+rllib``
ablation); PPO's value loss is not clipped (RLlib's ``vf_clip_param`` 10 clipped away the early
critic gradients of per-agent values in the tens). Protocol 1 (``docs/results/campaign``) had
none of the three.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Dict, List

#: Scenarios of the papers. Protocol 2's budgets for BPS v1 and v2, fixed before its runs: 2M
#: env steps (10% of HyperMARL's 20M; protocol 1 stopped at 300k and 160k, where AdaPS was still
#: rising). Whether each method's test curve has flattened by then is reported, by the criterion
#: in docs/results/campaign_v2/README.md, not used to stop runs.
SCENARIOS: Dict[str, dict] = {
    "bps_v1": {"env": "bps", "env_config": {"preset": "v1"}, "env_steps": 2_000_000},
    "bps_v2": {"env": "bps", "env_config": {"preset": "v2"}, "env_steps": 2_000_000},
    "lbf": {"env": "lbf", "env_config": {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50},
            "env_steps": 400_000},
    # A candidate for protocol 2's LBF task (protocol 1's "lbf" ends at the ceiling for every
    # method): the package's default LBF, 8 agents with persistent levels [1,1,2,2,3,3,4,4] (the
    # example of ../shared/reference/environments.md) on 10x10 with 4 foods. Checked on FuPS and
    # NoPS before any comparison run
    # (docs/results/campaign_v2/task_check/): neither was at the ceiling, so it is in COMPARISON.
    "lbf_8p": {"env": "lbf", "env_config": {"levels": [1, 1, 2, 2, 3, 3, 4, 4], "grid_size": 10, "foods": 4, "max_steps": 50},
               "env_steps": 400_000},
    # A cause experiment, not in the comparison: LBF without the agents' levels in the
    # observation, to test whether FuPS learns LBF fastest because it can read each agent's type.
    "lbf_hidden_levels": {"env": "lbf", "env_config": {"levels": [1, 1, 2, 2, 3, 3], "grid_size": 8, "foods": 3, "max_steps": 50,
                                                       "observe_agent_levels": False}, "env_steps": 400_000},
    # C-RWARE tiny-4ag (4 agents of 2 colours), rware's normal request queue (4 requested shelves).
    "crware": {"env": "crware", "env_config": {"task": "tiny-4ag", "max_steps": 500}, "env_steps": 500_000},
    # The same with rware's "easy" queue (8 requested shelves): the campaign's C-RWARE task,
    # chosen by a FuPS check before any comparison run (docs/results/crware_check/): with the
    # normal queue FuPS stayed at its initial level, with the easy one it learned.
    "crware_easy": {"env": "crware", "env_config": {"size": "tiny", "n_agents": 4, "n_colours": 2, "difficulty": "easy",
                                                    "max_steps": 500}, "env_steps": 500_000},
    # A cause experiment, not in the comparison: crware_easy without the per-colour permutation
    # of the observation, to test whether FuPS serves both colours because the permuted layout
    # tells a network the agent's colour.
    "crware_easy_unpermuted": {"env": "crware", "env_config": {"size": "tiny", "n_agents": 4, "n_colours": 2, "difficulty": "easy",
                                                               "max_steps": 500, "permute_observations": False},
                               "env_steps": 500_000},
}
#: ``--scenarios all``: the comparison (the FuPS check's "crware" is left out; protocol 2 takes
#: "lbf_8p", which passed its ceiling check, instead of protocol 1's "lbf").
COMPARISON = ["bps_v1", "bps_v2", "lbf_8p", "crware_easy"]

#: The same settings for every method. A2C is the papers' protocol (``../shared/reference``:
#: n-step returns over 5-step rollouts of 8 parallel envs, one optimizer step per rollout batch
#: of 40 env steps); one ``train()`` (one Tune result) runs 250 such steps (10,000 env steps:
#: Tune's per-result logging cost about 0.6 s, as long as 2,000 env steps of training).
ALGORITHMS = {
    "ppo": {"training": {"lr": 3e-4, "gamma": 0.99, "entropy_coeff": 0.01, "vf_loss_coeff": 0.5,
                         "train_batch_size_per_learner": 2000, "minibatch_size": 500, "num_epochs": 4,
                         "vf_clip_param": float("inf")}},
    # plus rllib_adaps.a2c_settings (lr 3e-4, entropy 0.01, ...); env_copies: the papers' 8
    # parallel envs (--envs-per-runner x EnvRunners), which Protocol.name checks
    "a2c": {"rollout_steps": 5, "env_copies": 8, "env_steps_per_result": 10_000},
}
PRETRAINING = {"identity_env_steps": 3_000}  # the default timeline: fit on the initial policy's transitions
#: Test returns: ``episodes`` per mode on a local evaluation EnvRunner, in the first iteration,
#: every budget / ``points`` env steps and at the budget's end.
TEST_RETURNS = {"episodes": 20, "points": 20}


@dataclass(frozen=True)
class Protocol:
    """One (scenario, method) under ``algorithm``'s settings; the seed comes from Tune's grid.

    Cause experiments' knobs: ``rollout_steps`` (A2C only) replaces the papers' 5-step
    rollouts (one optimizer step per ``rollout_steps x envs`` env steps, n-step returns over the
    rollout); ``num_epochs`` (PPO only) replaces PPO's 4 passes over each batch; ``plain_loss``
    (PPO only) drops RLlib PPO's KL penalty and value-loss clipping, as ``a2c_settings`` does
    (the clipped ratio stays); ``mask_threshold`` (AdaPS only) replaces its lambda of 0.2."""

    scenario: str
    method: str
    algorithm: str
    num_env_runners: int
    envs_per_runner: int
    rollout_steps: int | None = None
    num_epochs: int | None = None
    plain_loss: bool = False
    rllib_a2c: bool = False
    mask_threshold: float | None = None
    env_steps: int | None = None  # the budget (None: the scenario's); sets where tests fall

    @property
    def env_copies(self) -> int:
        """Env copies sampled in parallel: the local EnvRunner's when there are no remote ones."""
        return self.envs_per_runner * max(1, self.num_env_runners)

    @property
    def name(self) -> str:
        """``{scenario}-{method}-{algorithm}``; an A2C whose update is not the papers' (5-step rollouts
        of 8 env copies) says so: ``a2c+50x8`` is 50-step rollouts of 8 copies; so does a PPO with
        other than its 4 epochs per batch, ``ppo+1ep``, or without its KL penalty and value-loss
        clipping, ``ppo+plain`` (``ppo+1ep+plain``: both); an AdaPS lambda other than 0.2,
        ``a2c+lambda0.5``. Their runs then never
        share a name, a table row or a Tune staging folder with the campaign's: two drivers that
        start the same experiment name in the same second share Tune's staging folder (named by
        start time and experiment) and copy each other's trials into their storage."""
        algorithm = self.algorithm
        if algorithm == "a2c":
            rollout = self.rollout_steps or ALGORITHMS["a2c"]["rollout_steps"]
            if (rollout, self.env_copies) != (ALGORITHMS["a2c"]["rollout_steps"], ALGORITHMS["a2c"]["env_copies"]):
                algorithm = f"a2c+{rollout}x{self.env_copies}"
            if self.rllib_a2c:
                algorithm += "+rllib"
        else:
            if self.num_epochs and self.num_epochs != ALGORITHMS["ppo"]["training"]["num_epochs"]:
                algorithm += f"+{self.num_epochs}ep"
            if self.plain_loss:
                algorithm += "+plain"
        from rllib_adaps.methods.adaps import AdaPSOptions

        if self.mask_threshold is not None and self.mask_threshold != AdaPSOptions.mask_threshold:
            algorithm += f"+lambda{self.mask_threshold:g}"
        return f"{self.scenario}-{self.method}-{algorithm}"

    def algorithm_config(self):
        """The AlgorithmConfig of this (scenario, method), without a seed."""
        from ray.rllib.algorithms.ppo import PPOConfig

        import rllib_adaps
        from rllib_adaps import PLAIN_LOSS

        spec = SCENARIOS[self.scenario]
        config = (
            PPOConfig()
            .environment(spec["env"], env_config=dict(spec["env_config"]))
            .env_runners(num_env_runners=self.num_env_runners, num_envs_per_env_runner=self.envs_per_runner)
            .rl_module(model_config={"fcnet_hiddens": [64, 64], "fcnet_activation": "relu"})
        )
        settings = ALGORITHMS[self.algorithm]
        if self.algorithm == "a2c":
            rollout_steps = self.rollout_steps or settings["rollout_steps"]
            config = rllib_adaps.a2c_settings(
                config.env_runners(rollout_fragment_length=rollout_steps)
                .training(train_batch_size_per_learner=rollout_steps * self.env_copies)
                .reporting(min_sample_timesteps_per_iteration=settings["env_steps_per_result"], min_time_s_per_iteration=0),
                reference=not self.rllib_a2c,
            )
        else:
            config = config.training(**settings["training"])
            if self.num_epochs:
                config = config.training(num_epochs=self.num_epochs)
            if self.plain_loss:
                config = config.training(**PLAIN_LOSS)
        options = dict(PRETRAINING) if self.method in ("adaps", "seps") else {}
        if self.mask_threshold is not None:
            options["mask_threshold"] = self.mask_threshold
        config = rllib_adaps.configure_sharing(config, self.method, **options)
        budget = self.env_steps or SCENARIOS[self.scenario]["env_steps"]
        return rllib_adaps.with_test_returns(config, every_env_steps=max(1, budget // TEST_RETURNS["points"]),
                                             end_env_steps=budget, episodes=TEST_RETURNS["episodes"])


def env_seed_range(seed: int, num_env_runners: int, envs_per_runner: int) -> range:
    """The env seeds a run with ``config.seed = seed`` resets its env copies with.

    RLlib seeds EnvRunner ``w`` (0: the local one, 1..R remote) with ``seed + w`` and its vector
    env's copy ``c`` with that plus ``c`` (on both paths), so runs whose seeds differ by less
    than ``R + copies`` replay each other's env streams: with consecutive seeds, most of a run's
    copies draw the same episode starts as the next seed's, and the seeds' returns move together
    (measured: docs/results/campaign/README.md).
    """
    return range(seed, seed + num_env_runners + envs_per_runner)


def check_seeds_independent(seeds: List[int], num_env_runners: int, envs_per_runner: int) -> None:
    """Refuses (SystemExit) seeds close enough to share env seeds (``env_seed_range``)."""
    ranges = [(env_seed_range(s, num_env_runners, envs_per_runner), s) for s in sorted(seeds)]
    for (a, sa), (b, sb) in zip(ranges, ranges[1:]):
        if a.stop > b.start:
            raise SystemExit(f"Seeds {sa} and {sb} share env seeds (each run resets its env copies with seeds "
                             f"{a.start}..{a.stop - 1} and {b.start}..{b.stop - 1}): space the seeds at least "
                             f"{len(a)} apart, e.g. --seeds 0,1000,2000,3000,4000.")
