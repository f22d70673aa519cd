"""PPO with one epoch over one minibatch and no KL term takes the A2C gradient, in one step."""

import numpy as np
import pytest
import torch
from ray.rllib.algorithms.ppo import PPOConfig
from ray.rllib.core.columns import Columns
from ray.rllib.evaluation.postprocessing import Postprocessing

import rllib_adaps  # noqa: F401  (registers the envs)
from engine_views import learner_views, module_id
from rllib_adaps import a2c_settings, configure_sharing
from rllib_adaps.rllib.shims import foreach_learner
from torch.optim.optimizer import register_optimizer_step_post_hook


def test_ppo_single_pass_loss_has_the_a2c_gradient():
    config = PPOConfig().environment("bps", env_config={"agents_per_type": [1, 1, 1]}).training(train_batch_size_per_learner=64)
    config = a2c_settings(configure_sharing(config, "adaps"))
    assert config.num_epochs == 1 and config.minibatch_size is None and not config.use_kl_loss
    spec = config.rl_module_spec
    mid = module_id(config)
    learner = config.build_learner(spaces={mid: (spec.observation_space, spec.action_space)})
    module = learner.module[mid].unwrapped()

    gen = torch.Generator().manual_seed(0)
    obs = torch.randn(64, 10, generator=gen)
    obs = torch.cat([obs, torch.randint(0, 3, (64, 1), generator=gen).float()], dim=1)
    with torch.no_grad():
        logits = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        dist = module.get_exploration_action_dist_cls().from_logits(logits)
        actions = dist.sample()
        logp = dist.logp(actions)
    advantages = torch.randn(64, generator=gen)
    targets = torch.randn(64, generator=gen)
    batch = {
        Columns.OBS: obs,
        Columns.ACTIONS: actions,
        Columns.ACTION_LOGP: logp,
        Columns.ACTION_DIST_INPUTS: logits,
        Postprocessing.ADVANTAGES: advantages,
        Postprocessing.VALUE_TARGETS: targets,
    }

    module.zero_grad()
    fwd_out = module.forward_train(batch)
    ppo_loss = learner.compute_loss_for_module(module_id=mid, config=config, batch=batch, fwd_out=fwd_out)
    ppo_loss.backward()
    ppo_grads = [p.grad.clone() for p in module.parameters()]

    module.zero_grad()
    train_dist = module.get_train_action_dist_cls().from_logits(module.forward_train(batch)[Columns.ACTION_DIST_INPUTS])
    values = module.compute_values(batch)
    a2c_loss = (
        -(advantages * train_dist.logp(actions)).mean()
        + 0.5 * (values - targets).pow(2).mean()
        - 0.01 * train_dist.entropy().mean()
    )
    a2c_loss.backward()
    a2c_grads = [p.grad.clone() for p in module.parameters()]

    assert len(ppo_grads) == len(a2c_grads) > 0
    for g_ppo, g_a2c in zip(ppo_grads, a2c_grads):
        torch.testing.assert_close(g_ppo, g_a2c, rtol=1e-5, atol=1e-6)
    assert any(float(g.abs().sum()) > 0 for g in ppo_grads)
    # Ratio exactly 1: the PPO loss is the A2C loss plus the constant mean(A * logp_old).
    torch.testing.assert_close(ppo_loss, a2c_loss + (advantages * logp).mean() - advantages.mean())


@pytest.mark.parametrize("method, fast_path", [("fups", None), ("nops", False)])
def test_a2c_settings_take_exactly_one_optimizer_step_per_iteration(ray_local, method, fast_path):
    """Counted on the Learner's optimizer through algo.train(); with NoPS that one step
    updates every agent's own slice (each network gets its one A2C update). FuPS on the fast
    path, NoPS on RLlib's multi-agent path."""
    config = (
        PPOConfig()
        .environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
        .env_runners(num_env_runners=0, num_envs_per_env_runner=2)
        .training(train_batch_size_per_learner=250)
    )
    algo = a2c_settings(configure_sharing(config, method, fast_path=fast_path)).build_algo()
    steps = []
    try:
        mid = module_id(algo)
        optimizers = {id(o) for _, o in foreach_learner(algo, lambda l: l.get_optimizers_for_module(mid))[0]}
        handle = register_optimizer_step_post_hook(lambda opt, a, k: steps.append(1) if id(opt) in optimizers else None)
        try:
            for _ in range(2):
                before = learner_views(algo)[0]["actor.hidden.0.weight"]
                count = len(steps)
                algo.train()
                assert len(steps) - count == 1
                after = learner_views(algo)[0]["actor.hidden.0.weight"]
                changed = [not np.array_equal(before[s], after[s]) for s in range(len(before))]
                assert all(changed) and len(changed) == (6 if method == "nops" else 1)
        finally:
            handle.remove()
    finally:
        algo.stop()


# --- the reference code's A2C -------------------------------------------------------------------
def reference_learner(order: str):
    config = PPOConfig().environment("bps", env_config={"agents_per_type": [1, 2, 1]}).training(train_batch_size_per_learner=64)
    if order == "before":
        config = configure_sharing(a2c_settings(config, reference=True), "nops")
    else:
        config = a2c_settings(configure_sharing(config, "nops"), reference=True)
    spec = config.rl_module_spec
    mid = module_id(config)
    return config, mid, config.build_learner(spaces={mid: (spec.observation_space, spec.action_space)})


@pytest.mark.parametrize("order", ["before", "after"])  # a2c_settings before or after configure_sharing
def test_reference_a2c_settings_optimizer_clipping_and_init(order):
    from rllib_adaps.rllib.learner import REFERENCE_ADAM_EPS, ReferenceA2CLearner

    config, mid, learner = reference_learner(order)
    assert isinstance(learner, ReferenceA2CLearner)
    assert config.grad_clip == 0.5 and config.grad_clip_by == "global_norm"
    (optimizer,) = [o for _, o in learner.get_optimizers_for_module(mid)]
    assert optimizer.defaults["eps"] == REFERENCE_ADAM_EPS
    module = learner.module[mid].unwrapped()
    for net, head_gain in ((module.actor, 0.01), (module.critic, 1.0)):
        for layer, gain in [*((h, 2 ** 0.5) for h in net.hidden), (net.head, head_gain)]:
            assert not layer.bias.detach().any()
            for weight in layer.weight.detach():  # every agent's slice (NoPS: 4)
                singular = torch.linalg.svdvals(weight)
                torch.testing.assert_close(singular, torch.full_like(singular, gain), rtol=1e-4, atol=1e-5)


def test_reference_a2c_loss_has_the_reference_gradient():
    """Raw advantages (targets minus the critic's values), the loss summed over agents."""
    config, mid, learner = reference_learner("after")
    module = learner.module[mid].unwrapped()
    n = module.num_agents
    gen = torch.Generator().manual_seed(0)
    obs = torch.cat([torch.randn(64, 10, generator=gen), torch.randint(0, n, (64, 1), generator=gen).float()], dim=1)
    with torch.no_grad():
        logits = module.forward_exploration({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
        dist = module.get_exploration_action_dist_cls().from_logits(logits)
        actions = dist.sample()
        logp = dist.logp(actions)
    targets = torch.randn(64, generator=gen)
    batch = {Columns.OBS: obs, Columns.ACTIONS: actions, Columns.ACTION_LOGP: logp, Columns.ACTION_DIST_INPUTS: logits,
             Postprocessing.ADVANTAGES: torch.randn(64, generator=gen),  # RLlib's standardised ones: not used
             Postprocessing.VALUE_TARGETS: targets}
    module.zero_grad()
    learner.compute_loss_for_module(module_id=mid, config=config, batch=batch, fwd_out=module.forward_train(batch)).backward()
    ours = [p.grad.clone() for p in module.parameters()]

    module.zero_grad()
    train_dist = module.get_train_action_dist_cls().from_logits(module.forward_train(batch)[Columns.ACTION_DIST_INPUTS])
    values = module.compute_values(batch)
    advantages = (targets - values).detach()
    reference = n * ((-(advantages * train_dist.logp(actions))).mean() + 0.5 * (values - targets).pow(2).mean()
                     - 0.01 * train_dist.entropy().mean())
    reference.backward()
    for g_ours, g_reference in zip(ours, [p.grad for p in module.parameters()]):
        torch.testing.assert_close(g_ours, g_reference, rtol=1e-5, atol=1e-6)


def test_reference_a2c_trains(ray_local):
    config = (PPOConfig().environment("bps", env_config={"agents_per_type": [2, 2, 2], "max_steps": 25})
              .env_runners(num_env_runners=0, num_envs_per_env_runner=2).training(train_batch_size_per_learner=250))
    algo = a2c_settings(configure_sharing(config, "fups"), reference=True).build_algo()
    try:
        before = learner_views(algo)[0]["actor.hidden.0.weight"]
        result = algo.train()
        assert np.isfinite(result["learners"][module_id(algo)]["total_loss"])
        assert not np.array_equal(before, learner_views(algo)[0]["actor.hidden.0.weight"])
    finally:
        algo.stop()
