"""Training one configuration: `fit` and its steps, the losses, the metrics, the
checkpoint format, and `runner train` (`standalone`). Nothing here knows Ray."""
