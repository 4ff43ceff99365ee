"""The app's one logger, "annotator": every module logs under it with `logging.getLogger(__name__)`.

`setup_logging(verbose)` (the CLI's `main()` calls it once, for the window too) sends the records
to `annotator.log` in the user's log folder (`$ANNOTATOR_LOG_DIR`, else platformdirs'
`user_log_dir("annotator")`), rotated at 1 MB with 3 old files kept, with timestamps; with
`verbose` (`-v`) also to stderr, DEBUG included. Without it nothing reaches stderr: a person sees
the one-sentence error, the log file keeps the traceback behind it.

Logging never fails the app: a log folder that cannot be created, or a file that cannot be
written, means records go nowhere. Only the standard library is imported here.
"""

from __future__ import annotations

import logging
import logging.handlers
import os
import sys
from pathlib import Path

LOGGER_NAME = "annotator"
LOG_DIR_ENV = "ANNOTATOR_LOG_DIR"
LOG_FILE_NAME = "annotator.log"
MAX_BYTES = 1_000_000
BACKUP_COUNT = 3
_FORMAT = "%(asctime)s %(levelname)s %(name)s [pid %(process)d, %(threadName)s] %(message)s"

logger = logging.getLogger(LOGGER_NAME)


def log_dir() -> Path:
    """`$ANNOTATOR_LOG_DIR`, else the platform's user log folder (e.g. ~/.local/state/.../log)."""
    value = os.environ.get(LOG_DIR_ENV)
    if value:
        return Path(value).expanduser()
    import platformdirs

    return Path(platformdirs.user_log_dir(LOGGER_NAME))


class _QuietRotatingFileHandler(logging.handlers.RotatingFileHandler):
    """A write that fails (disk full, rotation refused on Windows) drops the record silently."""

    def handleError(self, record: logging.LogRecord) -> None:
        pass


def setup_logging(verbose: bool = False) -> Path | None:
    """Attach the log file (and with `verbose` stderr) to the "annotator" logger.

    Returns the log file, or None when it cannot be used. Calling it again replaces the handlers
    it attached before (never doubles them), so the last call's `verbose` holds.
    """
    close_logging()
    logger.setLevel(logging.DEBUG if verbose else logging.INFO)
    formatter = logging.Formatter(_FORMAT)
    handlers: list[logging.Handler] = []

    path: Path | None = None
    try:
        folder = log_dir()
        folder.mkdir(parents=True, exist_ok=True)
        path = folder / LOG_FILE_NAME
        handlers.append(
            _QuietRotatingFileHandler(
                path, maxBytes=MAX_BYTES, backupCount=BACKUP_COUNT, encoding="utf-8"
            )
        )
    except Exception:  # no usable log folder: log to nothing rather than fail
        path = None
    if verbose and sys.stderr is not None:  # a windowed app on Windows has no stderr
        handlers.append(logging.StreamHandler(sys.stderr))
    if not handlers:
        # Without any handler, logging's last resort would print warnings on stderr.
        handlers.append(logging.NullHandler())
    for handler in handlers:
        handler._annotator_handler = True
        handler.setFormatter(formatter)
        logger.addHandler(handler)
    return path


def close_logging() -> None:
    """Detach and close the handlers `setup_logging` attached (the log file is flushed)."""
    for handler in list(logger.handlers):
        if getattr(handler, "_annotator_handler", False):
            logger.removeHandler(handler)
            handler.close()
