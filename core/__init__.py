"""winnow.core: errors, config base, device choice, run directory, shard I/O and stats.

The bottom layer: it imports nothing else of winnow (the import contract in ``pyproject.toml`` checks this).
"""
