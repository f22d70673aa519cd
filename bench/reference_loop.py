"""The floor a user could write: plain PyTorch PPO and A2C on the fast path's ``SlotVectorEnv``.

Written to be read top to bottom, as CleanRL's ``ppo.py`` is: settings, env, network, rollout,
advantages, update. It is the baseline ``bench/speed_vs_reference.py`` times the plugin against,
so it does what the plugin's RLlib config does and nothing more:

- **Env.** ``E`` copies of a batched env (``make_parallel_env(name, cfg).make_batched(E)``)
  behind the project's ``SlotVectorEnv``: ``E * N`` slots, slot ``c * N + i`` is agent ``i`` of
  copy ``c``, observations zero-padded with the agent index as the last column. A copy that
  ended is reset on the next ``step()`` (gymnasium's next-step autoreset): that step's
  actions are ignored and it is not a transition; it does give the final observation's value
  for the truncation bootstrap, as RLlib's extra timestep per episode chunk does.
- **One policy for all slots (FuPS).** The plugin's FuPS engine (``rllib_adaps.rllib.module``)
  has one parameter slice, no masks, no id input: it drops the index column and reads it only
  to mask actions an agent lacks (none on BPS/LBF/C-RWARE, where every agent has the same
  action count). Here likewise.
- **Network.** Separate actor and critic MLPs, ``hiddens`` with ``activation`` (the plugin's
  ``PAPER_NETWORK``: 64x64 ReLU), ``torch.nn.Linear`` default init (the engine's
  ``GroupedLinear`` draws weights and biases as ``torch.nn.Linear`` does).
- **Rollout.** Until ``batch_env_steps`` env steps (counted as RLlib counts them: transitions,
  not autoreset steps), from where the previous iteration stopped (episodes run across
  iterations). Actor and critic run on the rollout's observations (RLlib's EnvRunner runs the
  actor only and the critic over the whole batch in the learner's GAE connector: the same
  arithmetic, one call per step here instead of one per batch there).
- **Advantages.** GAE(gamma, lambda) with termination (no bootstrap) and truncation (bootstrap
  from the final observation's value); value targets = advantages + values; advantages
  standardised over the whole batch, ``(A - mean) / max(1e-4, std)``, as RLlib's GAE connector
  does (``standardize_advantages=False`` for the papers' A2C).
- **Update.** ``epochs`` passes over the batch in minibatches of ``minibatch_rows`` agent rows
  (None: the whole batch as one minibatch, RLlib's dummy iterator); the last minibatch of a
  pass is filled up by wrapping around to the start, as RLlib's ``MiniBatchCyclicIterator``
  does, so a pass takes ``ceil(rows / minibatch_rows)`` optimizer steps.
- **PPO loss** as RLlib's ``PPOTorchLearner``: clipped surrogate, value loss
  ``clamp((V - target)^2, 0, vf_clip)`` (RLlib clamps the squared error), entropy bonus, and the
  KL penalty ``kl_coeff * KL(old || new)`` whose coefficient adapts after each update (x1.5
  above ``2 * kl_target``, x0.5 below ``kl_target / 2``) when ``kl_coeff > 0``; all terms means
  over rows.
- **A2C loss** (``a2c_iteration``): ``-(A * log pi).mean() + vf_coeff * (V - R)^2 .mean() -
  ent_coeff * H.mean()``, one optimizer step per rollout; with lambda 1 the targets are
  n-step returns over the rollout.
- **Adam** with ``lr`` and ``adam_eps`` (RLlib builds ``torch.optim.Adam(params)``: eps 1e-8);
  gradient norm clipped at ``max_grad_norm`` (None: not clipped, RLlib's ``grad_clip=None``).

Timing: each iteration returns its env steps, seconds and a breakdown (``env``: the vector
env's ``step``/``reset``; ``forward``: the network on the rollout's observations; ``sampling``:
the rest of the rollout (tensors, action sampling, buffers); ``gae``: advantages, targets,
flattening, standardising; ``learn_forward``: network and loss on minibatches; ``backward``;
``optimizer``: zero_grad, clipping, Adam step; ``learn_other``: minibatch indexing, KL
coefficient).
"""

from __future__ import annotations

import dataclasses
import itertools
import math
import time
from collections import defaultdict
from collections.abc import Sequence
from typing import Any

import numpy as np
import torch
from torch import nn
from torch.distributions import Categorical

from rllib_adaps.envs import make_parallel_env
from rllib_adaps.rllib.fast_path import SlotVectorEnv

ACTIVATIONS = {"relu": nn.ReLU, "tanh": nn.Tanh}


@dataclasses.dataclass
class Settings:
    """What one run uses. Defaults: the plugin's PPO FuPS in ``bench/fast_path_speed.py``
    (RLlib's PPO defaults wherever that bench leaves a setting alone)."""

    env: str = "bps"
    env_config: dict[str, Any] = dataclasses.field(default_factory=lambda: {"preset": "v2"})
    copies: int = 8  # env copies (num_envs_per_env_runner)
    hiddens: Sequence[int] = (64, 64)  # PAPER_NETWORK["fcnet_hiddens"]
    activation: str = "relu"  # PAPER_NETWORK["fcnet_activation"]
    batch_env_steps: int = 2000  # train_batch_size_per_learner (env steps on the fast path)
    minibatch_rows: int | None = 500  # minibatch_size (agent rows); None: the whole batch
    epochs: int = 1  # num_epochs
    shuffle: bool = True  # CleanRL shuffles every pass; RLlib does not with num_epochs=1 (see report)
    gamma: float = 0.99  # AlgorithmConfig.gamma
    lam: float = 1.0  # PPOConfig.lambda_
    clip: float = 0.3  # PPOConfig.clip_param
    vf_clip: float = 10.0  # PPOConfig.vf_clip_param (clamps the squared error)
    vf_coeff: float = 1.0  # PPOConfig.vf_loss_coeff
    ent_coeff: float = 0.0  # PPOConfig.entropy_coeff
    kl_coeff: float = 0.2  # PPOConfig.kl_coeff (use_kl_loss=True); 0: no KL term
    kl_target: float = 0.01  # PPOConfig.kl_target
    lr: float = 5e-5  # PPOConfig.lr
    adam_eps: float = 1e-8  # torch.optim.Adam's default, as TorchLearner builds it
    max_grad_norm: float | None = None  # PPOConfig.grad_clip
    standardize_advantages: bool = True  # RLlib's GAE connector always does
    seed: int = 0


def a2c_settings(**overrides) -> Settings:
    """The A2C protocol of ``rllib_adaps.a2c_settings`` on BPS v1: 8 copies x 5-step rollouts,
    one optimizer step per 40 env steps, lambda 1, no KL, value loss unclipped, RLlib's Adam
    (eps 1e-8) and no gradient clipping; the papers' A2C differs in eps (1e-5), clipping (0.5)
    and unstandardised advantages (``../shared/reference/methods.md``)."""
    base = {"env_config": {"preset": "v1"}, "batch_env_steps": 40, "minibatch_rows": None, "epochs": 1, "lam": 1.0,
            "lr": 3e-4, "ent_coeff": 0.01, "vf_coeff": 0.5, "vf_clip": math.inf, "kl_coeff": 0.0}
    return Settings(**{**base, **overrides})


# --------------------------------------------------------------------------- env and network
def make_env(s: Settings) -> SlotVectorEnv:
    env = SlotVectorEnv(make_parallel_env(s.env, s.env_config).make_batched(s.copies))
    return env


def mlp(sizes: Sequence[int], activation: str) -> nn.Sequential:
    layers = []
    for a, b in itertools.pairwise(sizes[:-1]):
        layers += [nn.Linear(a, b), ACTIVATIONS[activation]()]
    layers.append(nn.Linear(sizes[-2], sizes[-1]))
    return nn.Sequential(*layers)


class ActorCritic(nn.Module):
    """Separate actor and critic on the observation without its agent-index column."""

    def __init__(self, env: SlotVectorEnv, hiddens: Sequence[int], activation: str):
        super().__init__()
        obs_dim, num_actions = env.obs_dim, int(env.single_action_space.n)
        self.actor = mlp([obs_dim, *hiddens, num_actions], activation)
        self.critic = mlp([obs_dim, *hiddens, 1], activation)
        sizes = torch.as_tensor(env.action_sizes)
        self.masked = bool((sizes < num_actions).any())  # some agent lacks some actions
        if self.masked:
            allowed = torch.arange(num_actions)[None, :] < sizes[:, None]
            self.register_buffer("penalty", torch.where(allowed, 0.0, torch.finfo(torch.float32).min))

    def logits(self, obs: torch.Tensor) -> torch.Tensor:
        out = self.actor(obs[:, :-1])
        return out + self.penalty[obs[:, -1].long()] if self.masked else out

    def value(self, obs: torch.Tensor) -> torch.Tensor:
        return self.critic(obs[:, :-1]).squeeze(-1)


# --------------------------------------------------------------------------- the loop
class Runner:
    """Env, network, optimizer and the env state carried from one iteration to the next."""

    def __init__(self, s: Settings):
        torch.manual_seed(s.seed)
        self.s = s
        self.env = make_env(s)
        self.num_agents = self.env.num_agents
        self.net = ActorCritic(self.env, s.hiddens, s.activation)
        self.opt = torch.optim.Adam(self.net.parameters(), lr=s.lr, eps=s.adam_eps)
        self.kl_coeff = s.kl_coeff
        obs, _ = self.env.reset(seed=s.seed)
        self.obs = obs
        self.restarting = np.zeros(self.env.num_envs, bool)  # slots whose next step is an autoreset
        self.times: dict[str, float] = defaultdict(float)

    def _clock(self, key: str, start: float) -> float:
        now = time.perf_counter()
        self.times[key] += now - start
        return now

    # ------------------------------------------------------------------ rollout
    def rollout(self) -> dict[str, torch.Tensor]:
        """Steps the env until ``batch_env_steps`` env steps; returns time-major ``[T, slots]`` tensors."""
        s, env, net = self.s, self.env, self.net
        buf = defaultdict(list)
        env_steps = 0
        t = time.perf_counter()
        while env_steps < s.batch_env_steps:
            obs = torch.from_numpy(self.obs)
            t = self._clock("sampling", t)
            with torch.no_grad():
                logits = net.logits(obs)
                value = net.value(obs)
            t = self._clock("forward", t)
            dist = Categorical(logits=logits)
            action = dist.sample()
            valid = torch.from_numpy(~self.restarting)
            t = self._clock("sampling", t)
            next_obs, reward, terminated, truncated, _ = env.step(action.numpy())
            t = self._clock("env", t)
            for key, x in (("obs", obs), ("action", action), ("logp", dist.log_prob(action)), ("logits", logits),
                           ("value", value), ("reward", torch.from_numpy(reward).float()),
                           ("terminated", torch.from_numpy(terminated)), ("done", torch.from_numpy(terminated | truncated)),
                           ("valid", valid)):
                buf[key].append(x)
            env_steps += int((~self.restarting).sum()) // self.num_agents
            self.restarting = terminated | truncated
            self.obs = next_obs
        with torch.no_grad():
            last_value = net.value(torch.from_numpy(self.obs))
        t = self._clock("forward", t)
        out = {k: torch.stack(v) for k, v in buf.items()}
        out["last_value"] = last_value
        self.env_steps = env_steps
        self._clock("sampling", t)
        return out

    # ------------------------------------------------------------------ advantages
    def advantages(self, b: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        """GAE over the rollout; returns the valid rows, flattened."""
        start = time.perf_counter()
        s = self.s
        values, rewards = b["value"], b["reward"]
        # Value of the observation after step t: the next row's (after an end, the next row is the
        # autoreset step, whose observation is the final one: the truncation bootstrap).
        next_values = torch.cat([values[1:], b["last_value"][None]])
        not_terminal = 1.0 - b["terminated"].float()
        not_done = 1.0 - b["done"].float()
        deltas = rewards + s.gamma * next_values * not_terminal - values
        adv = torch.zeros_like(values)
        running = torch.zeros_like(values[0])
        for t in reversed(range(len(values))):
            running = deltas[t] + s.gamma * s.lam * not_done[t] * running
            adv[t] = running
        valid = b["valid"]
        flat = {k: b[k][valid] for k in ("obs", "action", "logp", "logits")}
        flat["returns"] = (adv + values)[valid]
        a = adv[valid]
        if s.standardize_advantages:
            a = (a - a.mean()) / max(1e-4, float(a.std(correction=0)))
        flat["adv"] = a
        self._clock("gae", start)
        return flat

    # ------------------------------------------------------------------ updates
    def _step(self, loss: torch.Tensor, t: float) -> float:
        self.opt.zero_grad(set_to_none=True)
        t = self._clock("optimizer", t)
        loss.backward()
        t = self._clock("backward", t)
        if self.s.max_grad_norm is not None:
            nn.utils.clip_grad_norm_(self.net.parameters(), self.s.max_grad_norm)
        self.opt.step()
        return self._clock("optimizer", t)

    def ppo_update(self, b: dict[str, torch.Tensor]) -> int:
        """``epochs`` passes in minibatches; returns the number of optimizer steps."""
        s, net = self.s, self.net
        rows = len(b["adv"])
        size = s.minibatch_rows or rows
        num_minibatches = math.ceil(rows / size)
        steps, kl = 0, torch.zeros(())
        t = time.perf_counter()
        for _ in range(s.epochs):
            order = torch.randperm(rows) if s.shuffle else torch.arange(rows)
            order = torch.cat([order, order[: num_minibatches * size - rows]])  # wrap around, as RLlib's iterator
            for m in range(num_minibatches):
                idx = order[m * size:(m + 1) * size]
                obs, adv = b["obs"][idx], b["adv"][idx]
                t = self._clock("learn_other", t)
                dist = Categorical(logits=net.logits(obs))
                logp = dist.log_prob(b["action"][idx])
                ratio = torch.exp(logp - b["logp"][idx])
                surrogate = torch.min(adv * ratio, adv * ratio.clamp(1 - s.clip, 1 + s.clip))
                vf_loss = (net.value(obs) - b["returns"][idx]).pow(2).clamp(0, s.vf_clip)
                loss = (-surrogate + s.vf_coeff * vf_loss - s.ent_coeff * dist.entropy()).mean()
                if self.kl_coeff > 0:
                    kl = torch.distributions.kl_divergence(Categorical(logits=b["logits"][idx]), dist).mean()
                    loss = loss + self.kl_coeff * kl
                t = self._clock("learn_forward", t)
                t = self._step(loss, t)
                steps += 1
        if self.kl_coeff > 0:  # RLlib's adaptive KL coefficient, on the last minibatch's KL
            kl = float(kl.detach())
            self.kl_coeff *= 1.5 if kl > 2 * s.kl_target else (0.5 if kl < 0.5 * s.kl_target else 1.0)
        self._clock("learn_other", t)
        return steps

    def a2c_update(self, b: dict[str, torch.Tensor]) -> int:
        """One optimizer step on the whole rollout."""
        s, net = self.s, self.net
        t = time.perf_counter()
        dist = Categorical(logits=net.logits(b["obs"]))
        policy_loss = -(b["adv"] * dist.log_prob(b["action"])).mean()
        value_loss = (net.value(b["obs"]) - b["returns"]).pow(2).mean()
        loss = policy_loss + s.vf_coeff * value_loss - s.ent_coeff * dist.entropy().mean()
        t = self._clock("learn_forward", t)
        self._step(loss, t)
        return 1


def _result(runner: Runner, env_steps: int, seconds: float, updates: int) -> dict[str, Any]:
    times, runner.times = dict(runner.times), defaultdict(float)
    per = 1e6 / (env_steps * runner.num_agents)  # us per agent step
    return {"env_steps": env_steps, "seconds": seconds, "env_steps_per_s": env_steps / seconds, "updates": updates,
            "us_per_agent_step": {"total": seconds * per, **{k: v * per for k, v in times.items()}}}


def ppo_iteration(runner: Runner) -> dict[str, Any]:
    """One PPO iteration: a ``batch_env_steps`` rollout and ``epochs`` passes over it."""
    start = time.perf_counter()
    batch = runner.advantages(runner.rollout())
    steps = runner.ppo_update(batch)
    return _result(runner, runner.env_steps, time.perf_counter() - start, steps)


def a2c_iteration(runner: Runner, env_steps: int = 2000) -> dict[str, Any]:
    """A2C updates (``batch_env_steps`` each) until ``env_steps`` env steps: one ``train()`` of the
    campaign's A2C protocol (``min_sample_timesteps_per_iteration`` 2,000)."""
    start, done, updates = time.perf_counter(), 0, 0
    while done < env_steps:
        updates += runner.a2c_update(runner.advantages(runner.rollout()))
        done += runner.env_steps
    return _result(runner, done, time.perf_counter() - start, updates)


def run_ppo(settings: Settings | None = None, iterations: int = 3) -> dict[str, Any]:
    """``iterations`` PPO iterations after one warm-up; medians of env steps/s and the breakdown."""
    return _run(Runner(settings or Settings()), ppo_iteration, iterations)


def run_a2c(settings: Settings | None = None, iterations: int = 3, env_steps: int = 2000) -> dict[str, Any]:
    """``iterations`` A2C iterations of ``env_steps`` env steps after one warm-up; medians."""
    return _run(Runner(settings or a2c_settings()), lambda r: a2c_iteration(r, env_steps), iterations)


def _run(runner: Runner, iteration, iterations: int) -> dict[str, Any]:
    iteration(runner)  # warm-up
    rows = [iteration(runner) for _ in range(iterations)]
    keys = rows[0]["us_per_agent_step"]
    return {"env_steps_per_s": float(np.median([r["env_steps_per_s"] for r in rows])),
            "updates": rows[-1]["updates"],
            "us_per_agent_step": {k: float(np.median([r["us_per_agent_step"].get(k, 0.0) for r in rows])) for k in keys}}


if __name__ == "__main__":
    for name, result in (("ppo bps_v2", run_ppo(iterations=2)), ("a2c bps_v1", run_a2c(iterations=2))):
        parts = ", ".join(f"{k} {v:.1f}" for k, v in result["us_per_agent_step"].items())
        print(f"{name}: {result['env_steps_per_s']:.0f} env steps/s, {result['updates']} updates/iteration; us per agent step: {parts}")
