"""The user surface beyond Python calls: the ``rllib`` command, experiment files, evaluation."""
