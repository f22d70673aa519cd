"""The sharing engine on its own: slices, masks, routing, equivalence to separate networks."""


import gymnasium as gym
import numpy as np
import pytest
import torch
from ray.rllib.core.columns import Columns

from rllib_adaps.rllib.module import AdaPSModule, GroupedLinear, ParameterSharingModule
from rllib_adaps.methods import SharingSpec, apply_plan
from rllib_adaps.core.identity import IdentityResult

AGENTS = [f"agent_{i}" for i in range(4)]
OBS_DIM = 6
HIDDEN = [16, 8]


def build(cls=ParameterSharingModule, **model_config):
    config = {"agent_ids": AGENTS, "fcnet_hiddens": HIDDEN, "fcnet_activation": "tanh", **model_config}
    return cls(observation_space=gym.spaces.Box(-10, 10, (OBS_DIM + 1,), np.float32), action_space=gym.spaces.Discrete(5),
               model_config=config)


def for_method(name, **options):
    return build(sharing_method=name, **options)


def method_for(name, options):
    """The method object for the engine's four agents, and the model_config keys that carry it."""
    spec = SharingSpec.build(name, options)
    return spec.for_agents(len(AGENTS)), spec.to_model_config()


def batch_for(agent_indices, seed=0):
    gen = torch.Generator().manual_seed(seed)
    obs = torch.randn(len(agent_indices), OBS_DIM, generator=gen)
    return {Columns.OBS: torch.cat([obs, torch.as_tensor(agent_indices, dtype=torch.float32)[:, None]], dim=1)}


def logits_and_values(module, batch):
    out = module.forward_train(batch)
    return out[Columns.ACTION_DIST_INPUTS], module.compute_values(batch, out[Columns.EMBEDDINGS])


def fit(labels, z_dim=3, seed=0):
    labels = np.asarray(labels)
    centres = np.random.default_rng(seed).normal(size=(labels.max() + 1, z_dim))
    return IdentityResult(identities=centres[labels], labels=labels, centres=centres, num_clusters=int(labels.max()) + 1)


# ------------------------------------------------------------------ slices (NoPS, SePS)
def test_a_samples_loss_reaches_only_its_own_slice():
    module = for_method("nops")
    logits, values = logits_and_values(module, batch_for([2, 2, 2]))
    (logits.sum() + values.sum()).backward()
    for layer in module.modules():
        if isinstance(layer, GroupedLinear):
            for p in (layer.weight, layer.bias):
                assert torch.any(p.grad[2] != 0)
                others = torch.cat([p.grad[i].reshape(-1) for i in (0, 1, 3)])
                assert torch.all(others == 0)


class PlainNet(torch.nn.Module):
    """A separate actor-critic for one agent, built from one slice of the engine."""

    def __init__(self, engine, s):
        super().__init__()

        def linear(grouped):
            layer = torch.nn.Linear(grouped.weight.shape[1], grouped.weight.shape[2])
            with torch.no_grad():
                layer.weight.copy_(grouped.weight[s].T)
                layer.bias.copy_(grouped.bias[s])
            return layer

        self.actor = torch.nn.ModuleList([linear(l) for l in engine.actor.hidden] + [linear(engine.actor.head)])
        self.critic = torch.nn.ModuleList([linear(l) for l in engine.critic.hidden] + [linear(engine.critic.head)])

    def forward(self, x):
        def run(layers):
            h = x
            for layer in layers[:-1]:
                h = torch.tanh(layer(h))
            return layers[-1](h)

        return run(self.actor), run(self.critic).squeeze(-1)


def test_nops_matches_separate_networks_after_one_adam_step():
    module = for_method("nops")
    separate = [PlainNet(module, i) for i in range(len(AGENTS))]
    agents = [0, 1, 2, 3, 1, 0, 3, 3, 2, 0, 1, 2]
    batch = batch_for(agents, seed=3)
    targets = torch.randn(len(agents), generator=torch.Generator().manual_seed(4))

    def loss(logits, values, t):  # summed, so each network's share is its own samples' loss
        return (torch.log_softmax(logits, -1)[:, 0] + (values - t) ** 2).sum()

    optimizer = torch.optim.Adam(module.parameters(), lr=1e-2)
    loss(*logits_and_values(module, batch), targets).backward()
    optimizer.step()
    index = torch.as_tensor(agents)
    for i, net in enumerate(separate):
        opt = torch.optim.Adam(net.parameters(), lr=1e-2)
        rows = index == i
        loss(*net(batch[Columns.OBS][rows, :-1]), targets[rows]).backward()
        opt.step()
    after_logits, after_values = logits_and_values(module, batch)
    for i, net in enumerate(separate):
        rows = index == i
        logits, values = net(batch[Columns.OBS][rows, :-1])
        torch.testing.assert_close(after_logits[rows], logits, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(after_values[rows], values, rtol=1e-5, atol=1e-6)


@pytest.mark.parametrize("agents", [[3, 0, 1, 2, 0, 3, 3], [3, 1, 3, 1, 1]], ids=["every slice", "some slices"])
def test_routed_batch_equals_one_sample_at_a_time(agents):
    """The block holds the slices present in the batch; alone, a sample takes the one-slice path."""
    module = for_method("nops")
    batch = batch_for(agents)
    together, values = logits_and_values(module, batch)
    for i in range(len(agents)):
        alone = {Columns.OBS: batch[Columns.OBS][i : i + 1]}
        torch.testing.assert_close(module.forward_inference(alone)[Columns.ACTION_DIST_INPUTS][0], together[i])
        torch.testing.assert_close(module.compute_values(alone)[0], values[i])


def test_seps_install_copies_the_shared_slice_and_routes_by_cluster():
    seps, keys = method_for("seps", {"num_clusters": 2})
    module = build(**keys)
    assert module.num_slices == 2 and module.agent_slice.tolist() == [0, 0, 0, 0]
    counts = module.parameter_counts()
    assert counts["in_use"] * 2 == counts["allocated"]  # one slice in use before clustering
    before = logits_and_values(module, batch_for([0, 1, 2, 3]))[0]
    optimizer = torch.optim.Adam(module.parameters())
    logits_and_values(module, batch_for([0, 1]))[0].sum().backward()
    optimizer.step()
    plan = seps.plan_install(fit([0, 1, 1, 0]), module.agent_slice.numpy(), HIDDEN)
    apply_plan(module, plan, [optimizer])
    assert module.agent_slice.tolist() == [0, 1, 1, 0] and module.agent_cluster.tolist() == [0, 1, 1, 0]
    assert module.parameter_counts()["in_use"] == counts["allocated"]
    for layer in module.modules():
        if isinstance(layer, GroupedLinear):
            torch.testing.assert_close(layer.weight[0], layer.weight[1])
            state = optimizer.state.get(layer.weight)
            if state:  # parameters with a gradient so far (the critic got none here)
                torch.testing.assert_close(state["exp_avg"][0], state["exp_avg"][1])
                torch.testing.assert_close(state["exp_avg_sq"][0], state["exp_avg_sq"][1])
    assert any(optimizer.state.get(layer.weight) for layer in module.actor.hidden)
    # Same weights in both slices: outputs unchanged by the install itself.
    after = logits_and_values(module, batch_for([0, 1, 2, 3]))[0]
    assert not torch.allclose(before, after)  # the Adam step above changed slice 0
    torch.testing.assert_close(after[1], logits_and_values(module, batch_for([0, 0, 2, 3]))[0][1])


def test_seps_reclustering_continues_each_majoritys_slice():
    seps, keys = method_for("seps", {})
    module = build(**keys)
    assert module.num_slices == 4  # K unknown: room for up to one cluster per agent
    with torch.no_grad():
        for layer in module.modules():
            if isinstance(layer, GroupedLinear):
                layer.weight[1].add_(1.0)
    module.set_tables(agent_slice=np.array([0, 1, 1, 1]))
    plan = seps.plan_install(fit([1, 1, 0, 0]), module.agent_slice.numpy(), HIDDEN)
    assert plan.copy_from == [1, 0]  # new cluster 0 = agents 2, 3 (old slice 1); cluster 1 = agents 0, 1 (tie -> slice 0)
    snapshot = module.actor.hidden[0].weight.detach().clone()
    apply_plan(module, plan)
    torch.testing.assert_close(module.actor.hidden[0].weight[0], snapshot[1])
    torch.testing.assert_close(module.actor.hidden[0].weight[1], snapshot[0])


# ------------------------------------------------------------------ masks (SNP-PS, AdaPS)
def test_masked_forward_equals_network_with_rows_zeroed():
    adaps, keys = method_for("adaps", {"num_clusters": 2})
    module = build(**keys)
    apply_plan(module, adaps.plan_install(fit([0, 1, 1, 0]), module.agent_slice.numpy(), HIDDEN))
    table = module.mask_table[module.agent_mask].float()
    assert not torch.equal(table[0], table[1]) and torch.equal(table[1], table[2]) and torch.equal(table[0], table[3])
    batch = batch_for([0, 1, 2, 3, 2, 1])
    logits, values = logits_and_values(module, batch)
    for i, agent in enumerate([0, 1, 2, 3, 2, 1]):
        reference = build()
        reference.load_state_dict({k: v for k, v in module.state_dict().items() if not k.startswith(("mask_table", "agent_mask"))}, strict=False)
        with torch.no_grad():
            for net in (reference.actor, reference.critic):
                offset = 0
                for layer, size in zip(net.hidden, net.hidden_sizes):
                    keep = table[agent, offset : offset + size]
                    layer.weight[0].mul_(keep[None, :])
                    layer.bias[0].mul_(keep)
                    offset += size
        single = {Columns.OBS: batch[Columns.OBS][i : i + 1]}
        torch.testing.assert_close(reference.forward_inference(single)[Columns.ACTION_DIST_INPUTS][0], logits[i])
        torch.testing.assert_close(reference.compute_values(single)[0], values[i])


def test_gradient_of_masked_out_neurons_is_zero():
    module = for_method("snp", pruning_rate=0.5)
    logits, values = logits_and_values(module, batch_for([2, 2, 2]))
    (logits.sum() + values.sum()).backward()
    row = module.mask_table[module.agent_mask[2]]
    for net in (module.actor, module.critic):
        offset = 0
        for layer, size in zip(net.hidden, net.hidden_sizes):
            dropped = ~row[offset : offset + size]
            assert dropped.any()
            assert torch.all(layer.weight.grad[0][:, dropped] == 0) and torch.all(layer.bias.grad[0][dropped] == 0)
            assert torch.any(layer.weight.grad[0][:, ~dropped] != 0)
            offset += size


def test_snp_masks_differ_per_agent_and_are_deterministic():
    a, b = for_method("snp", mask_seed=3), for_method("snp", mask_seed=3)
    torch.testing.assert_close(a.mask_table, b.mask_table)
    rows = a.mask_table[a.agent_mask]
    assert len({tuple(r.tolist()) for r in rows}) == len(AGENTS)
    assert rows.float().mean().item() == pytest.approx(0.5)
    assert a.mask_table.dtype == torch.bool and a.mask_table.shape == (len(AGENTS) + 1, sum(HIDDEN))


def test_fups_has_no_masks_and_id_input_widens_first_layer():
    fups, fups_id = for_method("fups"), for_method("fups_id")
    assert not fups.mask_actor and not fups.mask_critic and fups.mask_table.shape[0] == 1
    assert fups_id.actor.hidden[0].weight.shape[1] == fups.actor.hidden[0].weight.shape[1] + len(AGENTS)
    n_fups = sum(p.numel() for p in fups.parameters())
    n_id = sum(p.numel() for p in fups_id.parameters())
    assert n_id - n_fups == 2 * len(AGENTS) * HIDDEN[0]  # actor + critic first layers only
    obs = torch.zeros(2, OBS_DIM + 1)
    obs[1, -1] = 3.0
    logits = fups_id.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    assert not torch.allclose(logits[0], logits[1])
    plain = fups.forward_inference({Columns.OBS: obs})[Columns.ACTION_DIST_INPUTS]
    torch.testing.assert_close(plain[0], plain[1])


def test_shared_trunk_is_masked_the_same_for_actor_and_critic():
    adaps, keys = method_for("adaps", {"num_clusters": 2, "masked_networks": ["actor"]})
    module = build(**keys, vf_share_layers=True)
    assert module.mask_actor and module.mask_critic and not hasattr(module, "critic")
    apply_plan(module, adaps.plan_install(fit([0, 1, 1, 0]), module.agent_slice.numpy(), HIDDEN))
    batch = batch_for([1, 1])
    out = module.forward_train(batch)
    values = module.compute_values(batch, out[Columns.EMBEDDINGS])
    torch.testing.assert_close(values, module.compute_values(batch))  # embeddings reused, same result
    values.sum().backward()
    dropped = ~module.mask_table[module.agent_mask[1], : HIDDEN[0]]
    assert dropped.any() and torch.all(module.actor.hidden[0].bias.grad[0][dropped] == 0)


def test_actions_an_agent_lacks_are_never_chosen():
    module = build(action_sizes=[5, 3, 5, 2])
    batch = batch_for([1] * 200 + [3] * 200)
    logits = module.forward_exploration(batch)[Columns.ACTION_DIST_INPUTS]
    dist = module.get_exploration_action_dist_cls().from_logits(logits)
    actions = dist.sample()
    assert actions[:200].max() < 3 and actions[200:].max() < 2
    assert torch.isfinite(dist.entropy()).all()


# ------------------------------------------------------------------ state
def test_tables_are_compact_buffers_in_the_state_and_the_critic_is_not_on_env_runners():
    module = for_method("adaps")
    state = module.get_state()
    assert {"agent_slice", "agent_mask", "agent_cluster", "mask_table", "engine_version"} <= set(state)
    assert "actor_masks" not in state and state["mask_table"].dtype == np.bool_
    inference = module.get_state(inference_only=True)
    assert not any(k.startswith("critic.") for k in inference) and any(k.startswith("critic.") for k in state)
    runner_copy = AdaPSModule(observation_space=module.observation_space, action_space=module.action_space, inference_only=True,
                              model_config={"agent_ids": AGENTS, "fcnet_hiddens": HIDDEN, "fcnet_activation": "tanh"})
    assert not hasattr(runner_copy, "critic")
    runner_copy.set_state(inference)
    restored = for_method("adaps")
    restored.set_tables(agent_cluster=np.array([0, 1, 1, 0]), agent_mask=np.array([1, 2, 2, 1]))
    module.set_state(restored.get_state())
    assert module.agent_cluster.tolist() == [0, 1, 1, 0] and module.is_clustered()


def test_adaps_module_drops_into_a_config_with_only_agent_ids():
    module = build(AdaPSModule)
    assert module.sharing_spec.method == "adaps" and module.mask_actor and module.mask_critic
    assert module.mask_table.shape[0] == len(AGENTS) + 1  # room for up to one cluster per agent
    assert int(module.sharing_method_code) == 5 and not module.is_clustered()


def test_states_of_other_methods_agent_counts_and_old_releases_are_refused():
    adaps_state = for_method("adaps").get_state()
    with pytest.raises(ValueError, match="'adaps' run, but this run uses 'fups'"):
        for_method("fups").set_state(adaps_state)
    old = {k: v for k, v in adaps_state.items() if k != "engine_version"}
    old["actor_masks"] = np.ones((4, 24), np.float32)
    with pytest.raises(ValueError, match="before the one-engine release"):
        for_method("adaps").set_state(old)
    bigger = ParameterSharingModule(observation_space=gym.spaces.Box(-10, 10, (OBS_DIM + 1,), np.float32),
                                    action_space=gym.spaces.Discrete(5),
                                    model_config={"agent_ids": AGENTS + ["agent_4"], "fcnet_hiddens": HIDDEN})
    with pytest.raises(ValueError, match="tables for 4 agents"):
        bigger.set_state(for_method("fups").get_state())


@pytest.mark.parametrize(
    "bad, match",
    [
        ({"masking": "dropout"}, "Unknown model_config key 'masking'"),
        ({"sharing_method": "adaps", "masked_networks": ["policy"]}, "masked_networks must be a non-empty subset"),
        ({"sharing_method": "adaps", "mask_threshold": 1.0}, "\\(0, 1\\)"),
        ({"mask_threshold": 0.5}, "'mask_threshold'\\] is not an option of sharing method 'fups'"),
        ({"sharing_method": "adaps", "vae": {"zdim": 3}}, "Did you mean 'z_dim'"),
        ({"sharing_method": "adapt"}, "Did you mean 'adaps'"),
        ({"agent_ids": None}, "agent_ids"),
        ({"fcnet_activation": "gelu2"}, "fcnet_activation"),
        ({"action_sizes": [5, 5]}, "action_sizes"),
        ({"lstm_use_prev_action": True}, "lstm_use_prev_action.*is not supported"),
        ({"use_lstm": True, "recurrent_cell": "rnn"}, "recurrent_cell"),
        ({"critic_input": "state"}, "centralised critic's columns"),
        ({"vf_share_layers": True, "critic_sharing": "shared"}, "vf_share_layers=False"),
        ({"conv_filters": [[16, 4, 2]]}, "conv_filters"),
        ({"fcnet_hidens": [8]}, "Did you mean 'fcnet_hiddens'"),
        ({"num_slices": 2}, "Unknown model_config key 'num_slices'"),
    ],
)
def test_bad_model_config_is_rejected(bad, match):
    with pytest.raises(ValueError, match=match):
        build(**bad)


def test_rllib_defaults_in_model_config_are_accepted():
    from dataclasses import asdict

    from ray.rllib.core.rl_module.default_model_config import DefaultModelConfig

    defaults = {k: v for k, v in asdict(DefaultModelConfig()).items() if k not in ("fcnet_hiddens", "fcnet_activation")}
    assert build(**defaults).hidden_sizes == HIDDEN


def test_wrong_table_shapes_are_rejected():
    module = for_method("adaps")
    with pytest.raises(ValueError, match="mask_table"):
        module.set_tables(mask_table=np.ones((4, 3)))
    with pytest.raises(ValueError, match="agent_slice"):
        module.set_tables(agent_slice=np.array([0, 1, 0, 0]))  # AdaPS has one slice
