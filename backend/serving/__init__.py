"""The request path: resolve the version, validate, micro-batch, predict, log.

Import from the submodules: this package's import must stay light, because the prediction-log
writer process imports ``backend.serving.log_writer`` when it starts.
"""
