"""AdaPSModule: masking semantics, one forward for all agents, action masking, sizes."""

import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_adaps.module import AdaPSModule

AGENTS = [f"agent_{i}" for i in range(4)]
OBS_DIM = 6


def build(**model_config):
    config = {"agent_ids": AGENTS, "fcnet_hiddens": [16, 8], "fcnet_activation": "tanh", **model_config}
    return AdaPSModule(
        observation_space=gym.spaces.Box(-10, 10, (OBS_DIM + 1,), np.float32),
        action_space=gym.spaces.Discrete(5),
        model_config=config,
    )


def batch_for(agent_indices, seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(len(agent_indices), OBS_DIM, generator=gen)
    index = torch.as_tensor(agent_indices, dtype=torch.float32)[:, None]
    return {Columns.OBS: torch.cat([obs, index], dim=1)}


def random_masks(module, seed=0):
    rng = np.random.default_rng(seed)
    rows = (rng.random((len(AGENTS), sum(module.hidden_sizes))) > 0.4).astype(np.float32)
    rows[:, 0] = 1.0
    return rows


def test_masked_forward_equals_network_with_rows_zeroed():
    module = build(masking="cluster")
    rows = random_masks(module)
    module.set_agent_masks(rows, rows, np.arange(4))
    batch = batch_for([0, 1, 2, 3, 2, 1])
    logits = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
    values = module.compute_values(batch)
    for i, agent in enumerate([0, 1, 2, 3, 2, 1]):
        reference = build(masking="none")
        reference.load_state_dict({k: v for k, v in module.state_dict().items()}, strict=False)
        mask = torch.as_tensor(rows[agent])
        with torch.no_grad():
            offset = 0
            for net in (reference.actor, reference.critic):
                offset = 0
                for layer, size in zip(net.hidden, net.hidden_sizes):
                    keep = mask[offset : offset + size]
                    layer.weight.mul_(keep[:, None])
                    layer.bias.mul_(keep)
                    offset += size
        single = {Columns.OBS: batch[Columns.OBS][i : i + 1]}
        torch.testing.assert_close(reference.forward_inference(single)[Columns.ACTION_DIST_INPUTS][0], logits[i])
        torch.testing.assert_close(reference.compute_values(single)[0], values[i])


def test_gradient_of_masked_out_neurons_is_zero():
    module = build(masking="cluster")
    rows = random_masks(module, seed=1)
    module.set_agent_masks(rows, rows)
    batch = batch_for([2, 2, 2])  # only agent 2 contributes
    out = module.forward_train(batch)[Columns.ACTION_DIST_INPUTS].sum() + module.compute_values(batch).sum()
    out.backward()
    for net in (module.actor, module.critic):
        offset = 0
        for layer, size in zip(net.hidden, net.hidden_sizes):
            dropped = rows[2, offset : offset + size] == 0
            assert dropped.any()
            assert torch.all(layer.weight.grad[dropped] == 0)
            assert torch.all(layer.bias.grad[dropped] == 0)
            assert torch.any(layer.weight.grad[~dropped] != 0)
            offset += size


def test_one_batched_forward_equals_per_agent_forwards():
    module = build(masking="random", pruning_rate=0.5)
    batch = batch_for([3, 0, 1, 2, 0])
    together = module.forward_inference(batch)[Columns.ACTION_DIST_INPUTS]
    for i in range(5):
        alone = module.forward_inference({Columns.OBS: batch[Columns.OBS][i : i + 1]})[Columns.ACTION_DIST_INPUTS]
        torch.testing.assert_close(alone[0], together[i])


def test_snp_masks_differ_per_agent_and_are_deterministic():
    a, b = build(masking="random", mask_seed=3), build(masking="random", mask_seed=3)
    torch.testing.assert_close(a.actor_masks, b.actor_masks)
    assert len({tuple(r.tolist()) for r in a.actor_masks}) == len(AGENTS)
    assert a.actor_masks.mean().item() == pytest.approx(0.5)


def test_fups_has_no_masks_applied_and_id_input_widens_first_layer():
    fups, fups_id = build(), build(agent_id_input=True)
    assert not fups.mask_actor and not fups.mask_critic
    assert fups_id.actor.hidden[0].in_features == fups.actor.hidden[0].in_features + len(AGENTS)
    n_fups = sum(p.numel() for p in fups.parameters())
    n_id = sum(p.numel() for p in fups_id.parameters())
    assert n_id - n_fups == 2 * len(AGENTS) * 16  # actor + critic first layers only
    # The one-hot id makes agents' outputs differ on identical features.
    obs = torch.zeros(2, OBS_DIM + 1)
    obs[1, -1] = 3.0
    logits = fups_id.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert not torch.allclose(logits[0], logits[1])
    plain = fups.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(plain[0], plain[1])


def test_actions_an_agent_lacks_are_never_chosen():
    module = build(action_sizes=[5, 3, 5, 2])
    batch = batch_for([1] * 200 + [3] * 200)
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    actions = dist.sample()
    assert actions[:200].max() < 3 and actions[200:].max() < 2
    assert torch.isfinite(dist.entropy()).all()


def test_shared_trunk_variant_masks_both_heads():
    module = build(masking="cluster", vf_share_layers=True, masked_networks=["actor"])
    assert module.mask_actor and module.mask_critic
    module.set_agent_masks(np.zeros((4, 24), np.float32) + 1)
    assert module.compute_values(batch_for([0, 1])).shape == (2,)


def test_masks_are_buffers_in_the_state():
    module = build(masking="cluster")
    state = module.get_state()
    assert {"actor_masks", "critic_masks", "agent_groups"} <= set(state)
    module.set_agent_masks(random_masks(module), None, np.array([0, 1, 1, 0]))
    restored = build(masking="cluster")
    restored.set_state(module.get_state())
    torch.testing.assert_close(restored.actor_masks, module.actor_masks)
    assert restored.agent_groups.tolist() == [0, 1, 1, 0] and restored.is_clustered()


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"masking": "dropout"}, "masking"),
        ({"masked_networks": ["policy"]}, "masked_networks"),
        ({"mask_threshold": 1.0}, "\\(0, 1\\)"),
        ({"agent_ids": None}, "agent_ids"),
        ({"fcnet_activation": "gelu2"}, "fcnet_activation"),
        ({"action_sizes": [5, 5]}, "action_sizes"),
    ],
)
def test_bad_model_config_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        build(**bad)


def test_wrong_mask_shape_is_rejected():
    with pytest.raises(ValueError, match="shape"):
        build(masking="cluster").set_agent_masks(np.ones((4, 3)))
