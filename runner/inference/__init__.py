"""Inference: the `separate` command and its Python API (`Separator`), the exported model's
sidecar, the model shipped with the package, and test mixtures as PNG files with their
scoring. numpy, Pillow and onnxruntime only: a plain `pip install` runs it."""

from runner.errors import RunnerError
from runner.inference.images import BadImage
from runner.inference.separator import Separator, SizeWarning, UnusedWarning

__all__ = ["BadImage", "RunnerError", "Separator", "SizeWarning", "UnusedWarning"]
