"""SePS (Christianos et al. 2021): identity pre-training, k-means, one network per cluster.

The clusters' networks are parameter slices of the one module. Slices are allocated up to a
bound (``num_clusters`` if given, else one per agent, the most a fit can return), so a fit
only writes the agent -> slice table and copies weights into the slices it uses; unused
slices stay untouched and are reported as allocated, not in use.
"""

import numpy as np

from rllib_adaps.core.layers import EngineLayout
from rllib_adaps.methods.base import InstallPlan, PretrainingOptions, SharingMethod


class SePS(SharingMethod):
    name = "seps"
    title = "SePS"
    Options = PretrainingOptions
    pretrains = True

    def layout(self, hidden_sizes):
        return EngineLayout(num_slices=self.options.max_clusters(self.num_agents, self.space_groups))

    def plan_install(self, fit, agent_slice, hidden_sizes):
        """Cluster k gets slice k, starting from the old slice that held most of its agents.

        At the first fit every agent is on slice 0, so every cluster starts from the shared
        network; on re-clustering each new cluster continues its majority's network.
        """
        labels, previous = np.asarray(fit.labels), np.asarray(agent_slice)
        sources = []
        for k in range(fit.num_clusters):
            counts = np.bincount(previous[labels == k], minlength=int(previous.max()) + 1)
            sources.append(int(np.argmax(counts)))  # ties: the lowest slice
        return InstallPlan(agent_cluster=labels, agent_slice=labels, copy_from=sources, copy_to=list(range(fit.num_clusters)))
