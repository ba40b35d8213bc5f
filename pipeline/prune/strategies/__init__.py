"""The built-in prune strategies, one module each; importing this package registers them
(their ``order`` sets where they appear in lists, not the import order)."""

from winnow.pipeline.prune.strategies import (  # noqa: F401 - imported to register
    dbp,
    keep_all,
    prototypicality,
    quality,
    random_sample,
    semdedup,
)
