"""rpol-edge: unsupervised object localization with representer point selection, for edge devices."""

__version__ = "0.1.0"
