"""The PyTorch side: the Localizer module (the exported graph and the reference runtime),
the closed-form math of w* and the operating points, the factory that builds a Localizer from a
backbone and a model file, and the torch runtime (CUDA graphs, BatchNorm folding).
"""
