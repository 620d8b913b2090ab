"""DeepStream: the nvinfer config and README (`config`), the decode of the hand-off graph's
tensors (`decode`, NumPy and OpenCV) and the pyds pad probe (`probe`).
"""
