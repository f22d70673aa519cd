"""Binary neuron masks over one shared network: AdaPS cluster masks and SNP-PS random masks.

A mask is one row of 0/1 per hidden neuron, concatenated over the hidden layers. Masks are
computed once (after clustering, or at construction for SNP-PS) and stored as module buffers,
so they travel with the weights to every Learner and EnvRunner.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np
import torch


def _check_hidden_sizes(hidden_sizes: Sequence[int]) -> list[int]:
    sizes = [int(h) for h in hidden_sizes]
    if not sizes or any(h < 1 for h in sizes):
        raise ValueError(f"hidden_sizes must be a non-empty list of positive ints, got {hidden_sizes}.")
    return sizes


def check_threshold(threshold: float) -> float:
    """The AdaPS drop threshold lambda must lie strictly inside (0, 1)."""
    threshold = float(threshold)
    if not 0.0 < threshold < 1.0:
        raise ValueError(f"mask threshold lambda must be in (0, 1), got {threshold}.")
    return threshold


def _mapping_network(in_dim: int, out_dim: int, seed: int) -> torch.nn.Sequential:
    """The fixed random mapping network f_m (never trained): Linear-ReLU-Linear.

    Weights are He-initialised (N(0, 2/fan_in), then N(0, 1/fan_in) for the output), so a
    standardised input gives pre-sigmoid outputs of about unit variance: lambda then sets
    the share of neurons kept (measured in ``docs/results``), and distinct centres get
    distinct masks.
    """
    generator = torch.Generator().manual_seed(int(seed))
    hidden = max(64, in_dim)
    first, last = torch.nn.Linear(in_dim, hidden), torch.nn.Linear(hidden, out_dim)
    with torch.no_grad():
        first.weight.copy_(torch.randn(hidden, in_dim, generator=generator) * np.sqrt(2.0 / in_dim))
        last.weight.copy_(torch.randn(out_dim, hidden, generator=generator) / np.sqrt(hidden / 2.0))
        first.bias.zero_()
        last.bias.zero_()
    return torch.nn.Sequential(first, torch.nn.ReLU(), last)


def _split_layers(flat: np.ndarray, sizes: list[int]) -> list[np.ndarray]:
    return np.split(flat, np.cumsum(sizes)[:-1], axis=-1)


def _never_empty(masks: np.ndarray, scores: np.ndarray, sizes: list[int]) -> np.ndarray:
    """Keeps at least the highest-scoring neuron of every layer of every row."""
    out = masks.copy()
    offset = 0
    for size in sizes:
        layer = out[:, offset : offset + size]
        empty = layer.sum(axis=1) == 0
        if empty.any():
            best = scores[empty, offset : offset + size].argmax(axis=1)
            layer[np.flatnonzero(empty), best] = 1.0
        offset += size
    return out


def cluster_masks(
    centres: np.ndarray,
    hidden_sizes: Sequence[int],
    threshold: float = 0.2,
    seed: int = 0,
) -> list[np.ndarray]:
    """AdaPS masks ``M_k = d(sigmoid(f_m(z_k)))`` for cluster centres ``z_k``.

    Args:
        centres: ``[K, m]`` cluster centres (mean identity vector of each cluster).
        hidden_sizes: neurons of each masked hidden layer, e.g. ``[64, 64]``.
        threshold: lambda; a neuron is kept where its probability exceeds it.
        seed: seed of the fixed random mapping network (same seed -> same masks).

    Returns:
        One float32 0/1 array ``[K, hidden_sizes[l]]`` per layer. No row of any layer is all
        zero. The centres are standardised over the clusters first (mean 0, unit overall
        scale) so that masks do not depend on the arbitrary scale of the VAE latent space;
        identical centres therefore give identical masks.
    """
    sizes = _check_hidden_sizes(hidden_sizes)
    threshold = check_threshold(threshold)
    centres = np.asarray(centres, dtype=np.float64)
    if centres.ndim != 2 or centres.shape[0] < 1 or centres.shape[1] < 1:
        raise ValueError(f"centres must be a [K, m] array with K, m >= 1, got shape {centres.shape}.")
    standardised = centres - centres.mean(axis=0, keepdims=True)
    scale = standardised.std()
    if scale > 1e-12:
        standardised = standardised / scale
    network = _mapping_network(centres.shape[1], sum(sizes), seed)
    with torch.no_grad():
        probs = torch.sigmoid(network(torch.as_tensor(standardised, dtype=torch.float32))).numpy()
    masks = (probs > threshold).astype(np.float32)
    return _split_layers(_never_empty(masks, probs, sizes), sizes)


def random_pruning_masks(
    num_agents: int,
    hidden_sizes: Sequence[int],
    pruning_rate: float = 0.5,
    seed: int = 0,
) -> list[np.ndarray]:
    """SNP-PS masks: per agent and layer, exactly ``round(rate * h)`` neurons pruned at random.

    At least one neuron per layer always stays, so ``pruning_rate`` may be in ``[0, 1)``.
    """
    sizes = _check_hidden_sizes(hidden_sizes)
    if not 0.0 <= float(pruning_rate) < 1.0:
        raise ValueError(f"pruning_rate must be in [0, 1), got {pruning_rate}.")
    rng = np.random.default_rng(seed)
    layers = []
    for size in sizes:
        num_pruned = min(int(round(pruning_rate * size)), size - 1)
        order = rng.random((num_agents, size)).argsort(axis=1)
        layer = np.ones((num_agents, size), dtype=np.float32)
        np.put_along_axis(layer, order[:, :num_pruned], 0.0, axis=1)
        layers.append(layer)
    return layers
