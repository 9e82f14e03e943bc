"""Package attributes imported on first use (PEP 562), so that importing a package imports
only what is asked for: the command line answers ``--help`` without Keras, JAX or TensorFlow."""

from __future__ import annotations

import importlib
from collections.abc import Callable


def attributes(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module ``__getattr__`` giving ``name`` from the submodule ``where[name]`` of
    ``package``, imported when the name is first read."""

    def __getattr__(name: str) -> object:
        if name not in where:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(importlib.import_module(f"{package}.{where[name]}"), name)

    return __getattr__
