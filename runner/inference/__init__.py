"""Inference: `separate`, the exported model's sidecar, and test mixtures as PNG
files with their scoring. numpy, Pillow and onnxruntime only: a plain `pip install` runs it."""
