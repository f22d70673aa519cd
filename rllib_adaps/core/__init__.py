"""The math of parameter sharing, without Ray: grouped layers, neuron masks, identity VAE, K."""
