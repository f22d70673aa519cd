"""Agent -> module routing that is plain data: picklable and identical on every worker."""

from __future__ import annotations

from typing import Mapping


class AgentModuleMapping:
    """``policy_mapping_fn`` from a fixed dict (NoPS: own module, SePS: cluster module, ...)."""

    def __init__(self, agent_to_module: Mapping[str, str]):
        self.agent_to_module = dict(agent_to_module)

    def __call__(self, agent_id, episode=None, **kwargs) -> str:
        try:
            return self.agent_to_module[agent_id]
        except KeyError:
            raise ValueError(
                f"Agent {agent_id!r} has no module: this run was set up for the agents "
                f"{sorted(self.agent_to_module)}. Agents that first appear after "
                "configure_sharing() (or after clustering) are not supported."
            ) from None

    def __eq__(self, other) -> bool:
        return isinstance(other, AgentModuleMapping) and other.agent_to_module == self.agent_to_module

    def __repr__(self) -> str:
        return f"AgentModuleMapping({self.agent_to_module})"
