"""Package attributes imported on first use (PEP 562), so that importing a package imports
only what is asked for: the command line answers ``--help`` without Keras, JAX or TensorFlow."""

from __future__ import annotations

import importlib
import importlib.util
from collections.abc import Callable


def attributes(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` giving ``name`` from the submodule ``where[name]`` of
    ``package``, imported when the name is first read; a submodule's own name gives the
    submodule, as it did when the package imported them all."""

    def __getattr__(name: str) -> object:
        if name in where:
            return getattr(importlib.import_module(f"{package}.{where[name]}"), name)
        if not name.startswith("_") and importlib.util.find_spec(f"{package}.{name}"):
            return importlib.import_module(f"{package}.{name}")
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__
