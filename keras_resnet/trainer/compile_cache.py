"""XLA's persistent compilation cache for training and evaluation: a rerun of the same command
(after a crash, or with more epochs) loads its compiled steps from disk instead of compiling
them again. docs/performance.md measures what it saves.

``KERAS_RESNET_XLA_CACHE`` chooses the folder; ``0`` or an empty value turns the cache off.
By default it is ``keras_resnet/xla`` in the user's cache folder (``$XDG_CACHE_HOME``, else
``~/.cache``). A cache folder the user gave JAX itself (``JAX_COMPILATION_CACHE_DIR``) is kept.
The library never sets it: only the trainer's commands do, before their first compilation.
"""

from __future__ import annotations

import os
from pathlib import Path

VARIABLE = "KERAS_RESNET_XLA_CACHE"
OFF = ("", "0")
# Keras on JAX compiles many small programs (one per weight shape to initialise it): caching
# those too costs a few milliseconds each to read back, less than compiling them.
MIN_COMPILE_SECONDS = 0.1


def folder() -> Path | None:
    """Where the cache goes, or None when ``KERAS_RESNET_XLA_CACHE`` turns it off."""
    setting = os.environ.get(VARIABLE)
    if setting is not None:
        return None if setting.strip() in OFF else Path(setting).expanduser()
    cache_home = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(cache_home) / "keras_resnet" / "xla"


def enable() -> Path | None:
    """Point JAX's persistent compilation cache at ``folder()``; the folder in use, or None.

    It takes effect only before the process's first compilation: JAX decides once.
    """
    import jax

    chosen = jax.config.jax_compilation_cache_dir
    if chosen:
        return Path(chosen)
    path = folder()
    if path is None:
        return None
    jax.config.update("jax_compilation_cache_dir", str(path))
    jax.config.update("jax_persistent_cache_min_compile_time_secs", MIN_COMPILE_SECONDS)
    return path
