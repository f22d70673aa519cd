"""The RLlib integration: the RLModule, its callback, connectors, the fast path and RLlib shims."""
