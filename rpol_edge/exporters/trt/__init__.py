"""The TensorRT engine: the static compatibility check, the build and the trtexec command
lines. Runs on the device, without torch.
"""
