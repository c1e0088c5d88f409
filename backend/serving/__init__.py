"""The request path: resolve the version, validate, micro-batch, predict, hand to observers."""
