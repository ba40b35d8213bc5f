"""winnow.pipeline.report: pruning-curve reports, figures and the proxy language model."""
