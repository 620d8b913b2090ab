"""Refit an exported model through its own runtime, without PyTorch.

The fit needs, per image, the spatial mean of f, the spatial mean of f / ||f|| and the sum of
||f|| (core/wstar.py). The exported graph already computes f, with the model's own
pre-processing, right before the w* 1x1 convolution; the *fit graph* is that graph cut at the
convolution's input with those three reductions appended (`onnx_graph`, `ov_graph`). A runtime
runs it over a data set or a live source (`frames`, `job`), the sums are accumulated and solved by
the same code as ``fit``, and the model is written again with the new w* in its convolution and a
new metadata record (`writers`). Nothing here imports torch.
"""
