"""AdaPS cluster masks and SNP-PS random masks."""

import numpy as np
import pytest
import torch

from rllib_adaps.core.masks import cluster_masks, random_pruning_masks


def centres(k=3, m=10, seed=0):
    return np.random.default_rng(seed).normal(size=(k, m))


def test_shapes_binary_and_deterministic():
    a = cluster_masks(centres(), [64, 32], threshold=0.2, seed=5)
    b = cluster_masks(centres(), [64, 32], threshold=0.2, seed=5)
    assert [m.shape for m in a] == [(3, 64), (3, 32)]
    for x, y in zip(a, b):
        assert set(np.unique(x)) <= {0.0, 1.0}
        np.testing.assert_array_equal(x, y)
    other_seed = cluster_masks(centres(), [64, 32], threshold=0.2, seed=6)
    assert any((x != y).any() for x, y in zip(a, other_seed))


def test_distinct_centres_get_distinct_masks_and_identical_centres_identical_masks():
    masks = np.concatenate(cluster_masks(centres(), [64, 64]), axis=1)
    assert (masks[0] != masks[1]).any() and (masks[1] != masks[2]).any()
    same = np.repeat(centres(1), 3, axis=0)
    same_masks = np.concatenate(cluster_masks(same, [64, 64]), axis=1)
    assert (same_masks == same_masks[0]).all()
    # Two equal centres among others share their mask.
    c = centres(3)
    c[2] = c[0]
    m = np.concatenate(cluster_masks(c, [64, 64]), axis=1)
    np.testing.assert_array_equal(m[0], m[2])


def test_threshold_semantics_larger_lambda_masks_more():
    kept = [np.concatenate(cluster_masks(centres(4), [128, 128], threshold=t), axis=1).mean() for t in (0.1, 0.2, 0.5, 0.8, 0.95)]
    assert all(a >= b for a, b in zip(kept, kept[1:]))
    assert kept[0] > 0.9 and kept[-1] < 0.2


@pytest.mark.parametrize("threshold", [0.2, 0.5, 0.8])
def test_threshold_matches_sigmoid_rule(threshold):
    """A neuron is kept exactly where sigmoid(f_m(z_k)) > lambda, with f_m written out here from
    its definition: Linear-ReLU-Linear, He-initialised from its own seed, no biases, applied to
    the centres standardised over the clusters (rows no layer leaves empty are not at stake:
    64 + 32 neurons, and lambda below 0.9)."""
    c, seed, sizes = centres(4, m=6), 11, [64, 32]
    z = (c - c.mean(axis=0)) / (c - c.mean(axis=0)).std()
    generator = torch.Generator().manual_seed(seed)
    hidden = max(64, z.shape[1])
    first = torch.randn(hidden, z.shape[1], generator=generator, dtype=torch.float32) * np.sqrt(2.0 / z.shape[1])
    last = torch.randn(sum(sizes), hidden, generator=generator, dtype=torch.float32) / np.sqrt(hidden / 2.0)
    probs = torch.sigmoid(torch.relu(torch.as_tensor(z, dtype=torch.float32) @ first.T) @ last.T).numpy()
    expected = (probs > threshold).astype(np.float32)
    masks = np.concatenate(cluster_masks(c, sizes, threshold=threshold, seed=seed), axis=1)
    assert all(expected[:, :64].sum(axis=1) > 0) and all(expected[:, 64:].sum(axis=1) > 0)
    np.testing.assert_array_equal(masks, expected)


def test_no_layer_is_ever_all_zero():
    for seed in range(5):
        for layer in cluster_masks(centres(5, seed=seed), [8, 4, 2], threshold=0.99, seed=seed):
            assert (layer.sum(axis=1) >= 1).all()


@pytest.mark.parametrize("bad", [0.0, 1.0, -0.1, 1.5])
def test_threshold_outside_open_interval_is_an_error(bad):
    with pytest.raises(ValueError, match="\\(0, 1\\)"):
        cluster_masks(centres(), [64], threshold=bad)


def test_snp_masks_prune_exact_share_per_agent():
    layers = random_pruning_masks(6, [64, 32], pruning_rate=0.25, seed=1)
    assert [m.shape for m in layers] == [(6, 64), (6, 32)]
    assert (layers[0].sum(axis=1) == 48).all() and (layers[1].sum(axis=1) == 24).all()
    assert len({m.tobytes() for m in layers[0]}) == 6  # each agent its own mask
    again = random_pruning_masks(6, [64, 32], pruning_rate=0.25, seed=1)
    np.testing.assert_array_equal(layers[0], again[0])
    with pytest.raises(ValueError, match="pruning_rate"):
        random_pruning_masks(2, [8], pruning_rate=1.0)
    assert (random_pruning_masks(2, [4], pruning_rate=0.99)[0].sum(axis=1) == 1).all()


def test_mapping_network_is_not_trained_state():
    """Masks do not depend on torch's global RNG state (fixed network from its own seed)."""
    torch.manual_seed(123)
    a = cluster_masks(centres(), [64])
    torch.manual_seed(999)
    b = cluster_masks(centres(), [64])
    np.testing.assert_array_equal(a[0], b[0])
