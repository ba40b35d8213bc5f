"""winnow.pipeline: the stages (datatrove steps), prune decisions, the runner and executors, reports and the CLI."""
