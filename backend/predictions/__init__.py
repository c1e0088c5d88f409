"""The prediction log: the one row layout, the durable append path, the writer, every read.

Import from the submodules: this package's import must stay light, because the writer process
imports ``backend.predictions.writer`` when it starts.
"""
