"""The harness of the checks run on a lent GPU machine (staging, the run, the TensorRT check)."""
