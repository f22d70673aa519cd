"""The method comparison as a Tune campaign: scenarios x methods x seeds, then rliable statistics.

    python -m bench.campaign run --scenarios bps_v1 --seeds 0,1000,2000,3000,4000  # local Ray
    python -m bench.campaign run --scenarios all --address auto                   # a Ray cluster
    python -m bench.campaign run --scenarios bps_v1 --resume                      # after an interruption
    python -m bench.campaign aggregate                                           # statistics only

``run`` trains one Tune experiment per (scenario, method), a grid over the seeds, then
aggregates; ``aggregate`` reads Tune's result files only (and the archive ``runs.jsonl``) and
writes the statistics, curves and exports. One module per concern:

- ``protocol``: the scenarios and algorithm settings, fixed before any run and equal for every
  method, and ``Protocol``, the config and experiment name of one (scenario, method);
- ``run``: the Tune driver (start, skip, resume, Ctrl-C);
- ``results``: Tune's result files read back into runs, and the archive that outlives them;
- ``report``: the statistics (rliable), plots, model size, marl-eval export and CSV files.
"""
