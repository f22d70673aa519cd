"""The benchmarks. A package so that ``python -m bench.campaign`` runs from the repository root;
the other scripts still run as ``python bench/<script>.py``."""
