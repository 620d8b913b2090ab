"""Fidelity and accuracy tables of the product's formats (INT8, OpenVINO, DeepStream, the
raccoon table and its baselines).
"""
