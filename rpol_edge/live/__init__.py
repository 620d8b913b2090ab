"""Live localization: sources (cameras, streams, files), the capture/infer/render pipeline."""
