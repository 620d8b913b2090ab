"""The scripts behind every measured table; records in benchmarks/results/. Run them as
modules from the repository root: ``python -m benchmarks.product.startup ...``.
"""
