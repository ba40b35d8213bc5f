"""The built-in prune strategies, one module each.

Importing this package imports every module in it, and each registers its strategies in ``STRATEGIES``: adding a
strategy is one new module here plus its test, nothing else. The ``order`` a strategy declares sets where it
appears in lists (the config's allowed values, the report), not the import order.
"""

import importlib
import pkgutil

for _module in pkgutil.iter_modules(__path__):
    importlib.import_module(f"{__name__}.{_module.name}")
