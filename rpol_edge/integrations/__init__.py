"""Deployment integrations, each with its writer, its glue and its tests: DeepStream
(nvinfer config, decode, pad probe) and Triton (model repository, ensemble steps, server, client).
None of them imports torch.
"""
