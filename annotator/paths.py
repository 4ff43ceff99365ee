"""The user's folders for Annotator: cache (embeddings, exported decoders), data (checkpoints), config.

Each can be redirected with an environment variable (tests point them at temp folders).
"""

from __future__ import annotations

import os
from pathlib import Path

APP = "annotator"


def _from_env_or(var: str, default) -> Path:
    value = os.environ.get(var)
    return Path(value).expanduser() if value else Path(default())


def cache_dir() -> Path:
    """`$ANNOTATOR_CACHE_DIR`, else the platform's user cache folder (e.g. ~/.cache/annotator)."""
    import platformdirs

    return _from_env_or("ANNOTATOR_CACHE_DIR", lambda: platformdirs.user_cache_dir(APP))


def data_dir() -> Path:
    """`$ANNOTATOR_DATA_DIR`, else the platform's user data folder (downloaded checkpoints)."""
    import platformdirs

    return _from_env_or("ANNOTATOR_DATA_DIR", lambda: platformdirs.user_data_dir(APP))


def config_dir() -> Path:
    """`$ANNOTATOR_CONFIG_DIR`, else the platform's user config folder."""
    import platformdirs

    return _from_env_or("ANNOTATOR_CONFIG_DIR", lambda: platformdirs.user_config_dir(APP))


def samples_folder() -> Path:
    """The bundled sample photos (inside the installed package)."""
    from importlib.resources import files

    return Path(str(files("annotator.resources") / "samples"))
