"""Download manager for SAM checkpoints: resumable, verified, never leaves a bad file behind.

Peers' users got partial or corrupt downloads that were then loaded as if they were valid (a
truncated file under the final name), and some tools turned TLS verification off to get past a
proxy. Here:

- Bytes go to `<name>.part`; only after the size and SHA-256 match the registry does the file get
  its final name, with `os.replace` (atomic on one file system). A failed download never takes the
  final name. Where the registry knows no SHA-256 (docs/decisions/0011), the size must match and
  the file must load with `torch.load(weights_only=True)` as the family and type of its entry;
  where it knows no exact size, the server's length is used and the SHA-256 decides.
- An interrupted download (network drop, cancel, crash, Ctrl+C) leaves the `.part` file; the next
  call asks the server for the rest with `Range: bytes=N-` and appends. A server that ignores the
  range (answers 200) is handled by starting again from zero.
- Wrong bytes (hash mismatch, wrong size) delete the `.part` file and raise `UserError`.
- urllib's default opener is used: its ProxyHandler reads `HTTPS_PROXY`/`HTTP_PROXY`/`NO_PROXY`
  from the environment (and the system settings on macOS and Windows), and HTTPS uses the default
  SSL context, which verifies certificates and host names. There is no switch to turn that off;
  behind an inspecting proxy, point `SSL_CERT_FILE` at the proxy's CA bundle instead.

No Qt here: the dialog runs `download_checkpoint` in a QThread, the CLI with a tqdm bar.
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import ssl
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path

from annotator import __version__
from annotator.errors import UserError
from annotator.models.registry import CheckpointInfo, format_bytes

logger = logging.getLogger(__name__)

#: Environment variable that replaces the official URL base (a mirror, or a test server).
BASE_URL_ENV = "ANNOTATOR_MODEL_BASE_URL"

PART_SUFFIX = ".part"

#: progress(bytes_done, bytes_total, speed_bytes_per_s, eta_seconds_or_None)
ProgressCallback = Callable[[int, int, float, "float | None"], None]

#: Either a threading.Event (set = cancel) or a function returning True to cancel.
CancelCheck = "threading.Event | Callable[[], bool] | None"

_CHUNK_BYTES = 256 * 1024
_PROGRESS_INTERVAL_S = 0.1


class DownloadCancelled(UserError):
    """The person cancelled; the `.part` file stays so the next attempt resumes."""


class _RangeRefused(Exception):
    """HTTP 416 to a resume request."""


def checkpoints_dir() -> Path:
    """The folder downloaded checkpoints live in: `annotator.paths.data_dir() / "checkpoints"`."""
    from annotator.paths import data_dir

    return data_dir() / "checkpoints"


def checkpoint_url(info: CheckpointInfo, base_url: str | None = None) -> str:
    """The URL to fetch `info` from: `base_url` (or `$ANNOTATOR_MODEL_BASE_URL`) + file name,
    else the official URL."""
    base = base_url or os.environ.get(BASE_URL_ENV)
    if not base:
        return info.url
    return base.rstrip("/") + "/" + urllib.parse.quote(info.file_name)


def part_path(final_path: Path) -> Path:
    """Where the bytes of `final_path` collect while downloading."""
    return final_path.with_name(final_path.name + PART_SUFFIX)


def file_sha256(
    path: Path,
    progress: Callable[[int, int], None] | None = None,
    cancel: CancelCheck = None,
) -> str:
    """The lowercase hex SHA-256 of the file at `path`, read in 1 MiB blocks.

    progress(bytes_hashed, file_size) is called as it goes; `cancel` stops it with DownloadCancelled.
    """
    total = path.stat().st_size
    digest = hashlib.sha256()
    done = 0
    with open(path, "rb") as f:
        while block := f.read(1 << 20):
            digest.update(block)
            done += len(block)
            if _cancelled(cancel):
                raise DownloadCancelled("Verification cancelled.")
            if progress is not None:
                progress(done, total)
    return digest.hexdigest()


def download_checkpoint(
    info: CheckpointInfo,
    dest_dir: Path | None = None,
    *,
    base_url: str | None = None,
    progress: ProgressCallback | None = None,
    cancel: CancelCheck = None,
    timeout: float = 30.0,
) -> Path:
    """Download `info` into `dest_dir` (default `checkpoints_dir()`), verify it, return its path.

    A file already at the final name is verified and returned if it passes (its SHA-256, or size
    and a weights-only load where the registry has no SHA-256); otherwise it is downloaded again
    and replaced. Resumes from an existing `.part` file.

    Raises UserError (one sentence) on a network or HTTP error, a wrong size or hash (the `.part`
    file is then deleted) or a stop halfway (the `.part` file is kept for resuming);
    DownloadCancelled (a UserError) when `cancel` fires (the `.part` file is kept).
    """
    dest_dir = Path(dest_dir) if dest_dir is not None else checkpoints_dir()
    dest_dir.mkdir(parents=True, exist_ok=True)
    final = dest_dir / info.file_name
    part = part_path(final)

    if final.is_file() and _is_verified(final, info, cancel):
        return final
    url = checkpoint_url(info, base_url)
    _fetch_into(part, url, info.size_bytes, progress, cancel, timeout, info.approx_bytes)
    _verify_part(part, info)
    os.replace(part, final)
    _fsync_dir(dest_dir)
    return final


def _is_verified(path: Path, info: CheckpointInfo, cancel: CancelCheck) -> bool:
    """Whether the file already at the final name passes the same checks as a new download."""
    if info.size_bytes is not None and path.stat().st_size != info.size_bytes:
        return False
    if info.sha256 is not None:
        return file_sha256(path, cancel=cancel) == info.sha256
    try:
        check_loads_as(path, info)
    except UserError:
        logger.warning("%s does not load as %s: downloading it again", path, info.model_type)
        return False
    return True


def check_loads_as(path: Path, info: CheckpointInfo) -> None:
    """Raise UserError unless `path` loads with torch.load(weights_only=True) as `info`'s model.

    The check for files without a published SHA-256: a truncated file, an HTML error page or
    another model fails it. It reads the file memory-mapped (shapes, not a copy of the weights)
    and lets go of the mapping before returning, so the file can be renamed afterwards (Windows).
    """
    import gc

    from annotator.engines import families

    try:
        state = families.read_state_dict(path, mmap=True)
        found = families.detect_family(state, info.file_name)
    except Exception as exc:  # any failure to read it means it is not the file: one sentence
        if not isinstance(exc, UserError):
            logger.warning("Checking %s failed", path, exc_info=True)
        why = str(exc).rstrip(".") if isinstance(exc, UserError) else type(exc).__name__
        raise UserError(
            f"The download of {info.file_name} does not load as a checkpoint ({why})."
        ) from None
    finally:
        state = None  # drop the memory map before anyone renames or deletes the file
        gc.collect()
    if found.family != info.family or found.model_type != info.model_type:
        raise UserError(f"The download of {info.file_name} is {found.what()}, not {info.title}.")


def _fetch_into(
    part: Path,
    url: str,
    expected_size: int | None,
    progress: ProgressCallback | None,
    cancel: CancelCheck,
    timeout: float,
    approx_size: int | None = None,
) -> None:
    """Bring `part` to `expected_size` bytes from `url`, resuming from its current length.

    expected_size None: the size is not known in advance; the server's length is taken (and
    `approx_size`, a rounded figure, only shows progress when the server gives none).
    """
    offset = part.stat().st_size if part.exists() else 0
    if expected_size is not None and offset > expected_size:  # not ours to trust: start again
        part.unlink()
        offset = 0
    if offset == expected_size:
        return
    if offset:
        logger.info("Resuming %s at byte %d of %s", url, offset, expected_size or "?")
    try:
        response = _open(url, offset, timeout)
    except _RangeRefused:
        if expected_size is None:
            # Nothing after `offset`: the part is probably whole; its SHA-256 decides next.
            return
        _discard(part)
        raise UserError(
            f"The server refused to resume {url} (HTTP 416) because its file is shorter than "
            "the part already downloaded, which was deleted."
        ) from None
    with response:
        offset = _resume_offset(response, offset, part, url)
        remaining = _content_length(response)
        offered = offset + remaining if remaining is not None else None
        if expected_size is not None and offered is not None and offered != expected_size:
            _discard(part)
            raise UserError(
                f"The server offers {offered:,} bytes at {url} but the checkpoint "
                f"has {expected_size:,}; it is not the expected file."
            )
        total = expected_size if expected_size is not None else offered
        _copy_body(response, part, offset, total, progress, cancel, url, approx_size)


def _open(url: str, offset: int, timeout: float):
    headers = {"User-Agent": f"annotator/{__version__}", "Accept-Encoding": "identity"}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    request = urllib.request.Request(url, headers=headers)
    # The default opener keeps ProxyHandler (environment/system proxies); the explicit default
    # context verifies certificates and host names.
    opener = urllib.request.build_opener(
        urllib.request.HTTPSHandler(context=ssl.create_default_context())
    )
    try:
        return opener.open(request, timeout=timeout)
    except urllib.error.HTTPError as exc:
        logger.warning("HTTP %s for %s (from byte %d)", exc.code, url, offset, exc_info=True)
        if exc.code == 416 and offset:  # the server's file is shorter than our part
            exc.close()
            raise _RangeRefused() from None
        exc.close()
        raise UserError(
            f"The server answered HTTP {exc.code} {exc.reason} for {url}; "
            "check the address (or $ANNOTATOR_MODEL_BASE_URL) and try again later."
        ) from None
    except urllib.error.URLError as exc:
        logger.warning("Could not open %s", url, exc_info=True)
        raise UserError(_network_message(url, exc.reason)) from None
    except (TimeoutError, OSError) as exc:
        logger.warning("Could not open %s", url, exc_info=True)
        raise UserError(_network_message(url, exc)) from None


def _network_message(url: str, reason: object) -> str:
    host = urllib.parse.urlsplit(url).hostname or url
    if isinstance(reason, ssl.SSLCertVerificationError):
        return (
            f"The certificate of {host} could not be verified ({reason.verify_message}); "
            "if a proxy inspects HTTPS, point SSL_CERT_FILE at its certificate bundle."
        )
    return (
        f"Could not reach {host} ({reason}); check the network connection or the proxy "
        "settings (HTTPS_PROXY, NO_PROXY)."
    )


def _resume_offset(response, offset: int, part: Path, url: str) -> int:
    """The byte offset the response body starts at; truncates `part` when the server restarts."""
    status = getattr(response, "status", 200)
    if status == 206:
        start = _content_range_start(response.headers.get("Content-Range"))
        if start != offset:
            raise UserError(
                f"The server resumed {url} at byte {start} instead of {offset}; "
                "delete the .part file and try again."
            )
        return offset
    if offset:
        # 200 to a range request: the server sends the whole file, so the part starts over.
        logger.warning("%s ignored the range request: downloading again from zero", url)
        part.write_bytes(b"")
    return 0


def _content_range_start(value: str | None) -> int | None:
    # "bytes 1000-1999/2000"
    if not value or not value.startswith("bytes "):
        return None
    try:
        return int(value[6:].split("-", 1)[0])
    except ValueError:
        return None


def _content_length(response) -> int | None:
    value = response.headers.get("Content-Length")
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def _copy_body(
    response,
    part: Path,
    offset: int,
    expected_size: int | None,
    progress: ProgressCallback | None,
    cancel: CancelCheck,
    url: str,
    approx_size: int | None = None,
) -> None:
    """Append the response body to `part`, reporting progress; keeps what arrived on any stop.

    expected_size None: read until the server ends the body (no length was announced).
    """
    done = offset
    shown_total = expected_size or approx_size or 0
    meter = _SpeedMeter(offset)
    stopped: BaseException | None = None

    def report() -> None:
        total = max(shown_total, done)
        progress(done, total, meter.speed, meter.eta(done, total))

    with open(part, "ab") as f:
        try:
            while expected_size is None or done < expected_size:
                if _cancelled(cancel):
                    raise DownloadCancelled(
                        "Download cancelled; the part already downloaded is kept for resuming."
                    )
                # read1: what has arrived (up to a chunk), so Cancel is felt at once on a slow
                # line; a stalled connection ends with the socket timeout.
                want = _CHUNK_BYTES if expected_size is None else expected_size - done
                chunk = response.read1(min(_CHUNK_BYTES, want))
                if not chunk:
                    break
                f.write(chunk)
                done += len(chunk)
                if progress is not None and meter.due(done, max(shown_total, done)):
                    report()
        except (OSError, http.client.HTTPException) as exc:  # reset, timeout, IncompleteRead
            logger.warning("The transfer of %s stopped at byte %d", url, done, exc_info=True)
            stopped = exc
        finally:
            f.flush()
            os.fsync(f.fileno())
    if expected_size is None and stopped is None:
        shown_total = done  # the server ended the body: that is the whole file
    if progress is not None:
        report()
    if stopped is not None or (expected_size is not None and done < expected_size):
        reason = f" ({type(stopped).__name__})" if stopped is not None else ""
        of_total = f" of {format_bytes(expected_size)}" if expected_size is not None else ""
        raise UserError(
            f"The download from {urllib.parse.urlsplit(url).hostname} stopped at "
            f"{format_bytes(done)}{of_total}{reason}; run it again to resume."
        )


def _verify_part(part: Path, info: CheckpointInfo) -> None:
    """Delete `part` and raise UserError unless it is the file `info` describes."""
    size = part.stat().st_size
    if info.size_bytes is not None and size != info.size_bytes:
        _discard(part)
        raise UserError(
            f"The download of {info.file_name} has {size} bytes instead of {info.size_bytes}; "
            "it was deleted, please try again."
        )
    if info.sha256 is None:
        try:
            check_loads_as(part, info)
        except UserError as exc:
            _discard(part)
            raise UserError(f"{exc.args[0].rstrip('.')}; it was deleted.") from None
        return
    digest = file_sha256(part)
    if digest != info.sha256:
        _discard(part)
        raise UserError(
            f"The download of {info.file_name} is corrupt (SHA-256 {digest[:12]}… instead of "
            f"{info.sha256[:12]}…); it was deleted, please try again."
        )


def _discard(path: Path) -> None:
    try:
        path.unlink()
    except FileNotFoundError:
        pass


def _fsync_dir(folder: Path) -> None:
    """Make the rename durable (POSIX); Windows cannot open folders, where this is a no-op."""
    if os.name != "posix":
        return
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _cancelled(cancel: CancelCheck) -> bool:
    if cancel is None:
        return False
    if isinstance(cancel, threading.Event):
        return cancel.is_set()
    return bool(cancel())


class _SpeedMeter:
    """Transfer speed over the last few seconds (bytes/s) and the time left at that speed."""

    _WINDOW_S = 5.0

    def __init__(self, start_bytes: int):
        now = time.monotonic()
        self._samples: list[tuple[float, int]] = [(now, start_bytes)]
        self._last_report = 0.0
        self.speed = 0.0

    def due(self, done: int, total: int) -> bool:
        """Record a sample; True when a progress report is due (throttled, and at the end)."""
        now = time.monotonic()
        self._samples.append((now, done))
        while len(self._samples) > 2 and now - self._samples[0][0] > self._WINDOW_S:
            self._samples.pop(0)
        t0, b0 = self._samples[0]
        if now > t0:
            self.speed = (done - b0) / (now - t0)
        if done >= total or now - self._last_report >= _PROGRESS_INTERVAL_S:
            self._last_report = now
            return True
        return False

    def eta(self, done: int, total: int) -> float | None:
        if done >= total:
            return 0.0
        if self.speed <= 0:
            return None
        return (total - done) / self.speed


def format_eta(seconds: float | None) -> str:
    """Seconds left as a person reads them: "45 s", "3 min 10 s", "1 h 05 min", or "—"."""
    if seconds is None:
        return "—"
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60:02d} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60:02d} min"
