"""winnow.core: errors, config base, device choice, run directory (manifest, lock), shard I/O and stats.

The bottom layer: it imports nothing else of winnow (the import contract in ``pyproject.toml`` checks this).
"""
