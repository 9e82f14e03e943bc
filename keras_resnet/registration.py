"""The package's Keras classes registered as soon as Keras is imported, not before.

``import keras_resnet`` imports no Keras (the command line answers ``--help`` and ``list`` at
once), yet a ``.keras`` file of this package must load with ``keras.saving.load_model`` after a
bare ``import keras_resnet``. Keras finds custom classes in a registry that a class joins when
its module runs, so the modules defining them are imported once Keras is: right away if it
already is, else when its import finishes (an import hook). When a module of this package is
what imports Keras, they are imported once that module has finished running, since the ones
depending on it could not run before.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import sys
from collections.abc import Sequence

PACKAGE = "keras_resnet"
# The modules whose classes a saved model or checkpoint may name.
MODULES = tuple(
    f"{PACKAGE}.{name}"
    for name in ("augment", "blocks", "models", "losses", "optimizers", "schedules")
)


def register() -> None:
    """Import the modules that register classes with Keras; the hook does it after Keras."""
    for name in MODULES:
        importlib.import_module(name)


def register_with_keras() -> None:
    """Register now if Keras is imported, else once it is."""
    if "keras" in sys.modules:
        register()
    elif not any(isinstance(finder, _AfterKeras) for finder in sys.meta_path):
        sys.meta_path.insert(0, _AfterKeras())


def _initialising(name: str) -> bool:
    spec = getattr(sys.modules.get(name), "__spec__", None)
    return bool(getattr(spec, "_initializing", False))


class _AfterKeras(importlib.abc.MetaPathFinder):
    """Watches the imports of Keras and of this package's modules; registers after the first
    of them that ends with Keras imported and no module of this package still running."""

    def find_spec(self, name: str, path: Sequence[str] | None, target=None):
        if name != "keras" and not name.startswith(f"{PACKAGE}."):
            return None
        spec = next(
            (
                found
                for finder in sys.meta_path
                if finder is not self and hasattr(finder, "find_spec")
                for found in [finder.find_spec(name, path, target)]
                if found is not None
            ),
            None,
        )
        if spec is None or not hasattr(spec.loader, "exec_module"):
            return spec
        run = spec.loader.exec_module

        def exec_module(module) -> None:
            run(module)
            self._after(name)

        spec.loader.exec_module = exec_module
        return spec

    def _after(self, finished: str) -> None:
        if "keras" not in sys.modules or self not in sys.meta_path:
            return
        running = [
            name
            for name in list(sys.modules)
            if name != finished and name.startswith(f"{PACKAGE}.") and _initialising(name)
        ]
        if not running:
            sys.meta_path.remove(self)
            register()
