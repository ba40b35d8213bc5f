"""winnow.pipeline.cli: the ``winnow`` command and its sub-commands (loaded lazily)."""
