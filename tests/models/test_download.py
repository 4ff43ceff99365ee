"""The download manager against a real HTTP server on 127.0.0.1 (no network, no real weights)."""

from __future__ import annotations

import shutil
import ssl
import subprocess
import threading

import pytest

from annotator.errors import UserError
from annotator.models.download import (
    DownloadCancelled,
    checkpoint_url,
    checkpoints_dir,
    download_checkpoint,
    format_eta,
    part_path,
)
from models import FileServer, fake_checkpoint, registry_entry_for

DATA = fake_checkpoint()
INFO = registry_entry_for(DATA)


@pytest.fixture(autouse=True)
def _no_proxy_for_localhost(monkeypatch):
    for var in ("http_proxy", "HTTP_PROXY", "https_proxy", "HTTPS_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("no_proxy", "127.0.0.1,localhost")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1,localhost")


@pytest.fixture
def serve():
    servers = []

    def start(**kwargs) -> FileServer:
        server = FileServer({INFO.file_name: DATA}, **kwargs)
        servers.append(server)
        return server

    yield start
    for server in servers:
        server.close()


def test_full_download_verifies_and_lands_in_the_data_folder(serve):
    server = serve()
    reports = []
    path = download_checkpoint(INFO, base_url=server.url, progress=lambda *r: reports.append(r))
    assert path == checkpoints_dir() / INFO.file_name
    assert path.read_bytes() == DATA
    assert not part_path(path).exists()
    assert server.ranges == [None]
    done, total, speed, eta = reports[-1]
    assert (done, total, eta) == (len(DATA), len(DATA), 0.0)
    assert speed >= 0
    assert [r[0] for r in reports] == sorted(r[0] for r in reports)


def test_base_url_comes_from_the_environment(serve, monkeypatch, tmp_path):
    server = serve()
    monkeypatch.setenv("ANNOTATOR_MODEL_BASE_URL", server.url)
    assert checkpoint_url(INFO) == server.url + INFO.file_name
    path = download_checkpoint(INFO, tmp_path)
    assert path.read_bytes() == DATA


def test_official_url_is_used_without_an_override(monkeypatch):
    monkeypatch.delenv("ANNOTATOR_MODEL_BASE_URL", raising=False)
    from annotator.models.registry import official_checkpoint

    vit_b = official_checkpoint("vit_b")
    assert checkpoint_url(vit_b) == (
        "https://dl.fbaipublicfiles.com/segment_anything/sam_vit_b_01ec64.pth"
    )


def test_dropped_connection_keeps_the_part_and_the_next_call_resumes_with_range(serve, tmp_path):
    half = len(DATA) // 2
    server = serve(drop_after=half)
    with pytest.raises(UserError, match="run it again to resume"):
        download_checkpoint(INFO, tmp_path, base_url=server.url)
    final = tmp_path / INFO.file_name
    part = part_path(final)
    assert not final.exists()
    assert part.read_bytes() == DATA[:half]

    path = download_checkpoint(INFO, tmp_path, base_url=server.url)
    assert server.ranges == [None, f"bytes={half}-"]
    assert path.read_bytes() == DATA
    assert not part.exists()


def test_server_that_ignores_range_restarts_from_zero(serve, tmp_path):
    final = tmp_path / INFO.file_name
    part_path(final).write_bytes(DATA[:1000])
    server = serve(ignore_range=True)
    path = download_checkpoint(INFO, tmp_path, base_url=server.url)
    assert server.ranges == ["bytes=1000-"]
    assert path.read_bytes() == DATA  # not DATA[:1000] + DATA


def test_wrong_bytes_raise_and_leave_no_file(serve, tmp_path):
    server = serve(corrupt=True)
    with pytest.raises(UserError, match="corrupt"):
        download_checkpoint(INFO, tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []


def test_wrong_size_raises_before_downloading_and_leaves_no_file(tmp_path):
    server = FileServer({INFO.file_name: DATA[:-10]})
    try:
        with pytest.raises(UserError, match="not the expected file"):
            download_checkpoint(INFO, tmp_path, base_url=server.url)
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


def test_404_is_one_clear_sentence(serve, tmp_path):
    server = serve()
    missing = registry_entry_for(DATA, file_name="sam_nowhere.pth")
    with pytest.raises(UserError) as caught:
        download_checkpoint(missing, tmp_path, base_url=server.url)
    message = str(caught.value)
    assert "HTTP 404" in message and "sam_nowhere.pth" in message
    assert message.count(". ") == 0 and "\n" not in message
    assert list(tmp_path.iterdir()) == []


def test_unreachable_server_is_a_user_error(tmp_path):
    with pytest.raises(UserError, match="Could not reach 127.0.0.1"):
        download_checkpoint(INFO, tmp_path, base_url="http://127.0.0.1:9/", timeout=5)


def test_cancel_keeps_the_part_for_resume(serve, tmp_path):
    server = serve()
    cancel = threading.Event()
    with pytest.raises(DownloadCancelled):
        download_checkpoint(
            INFO, tmp_path, base_url=server.url, progress=lambda *r: cancel.set(), cancel=cancel
        )
    final = tmp_path / INFO.file_name
    part = part_path(final)
    assert not final.exists()
    kept = part.stat().st_size
    assert 0 < kept < len(DATA)
    assert part.read_bytes() == DATA[:kept]

    path = download_checkpoint(INFO, tmp_path, base_url=server.url)
    assert server.ranges[-1] == f"bytes={kept}-"
    assert path.read_bytes() == DATA


def test_cancel_callable_is_accepted(serve, tmp_path):
    server = serve()
    with pytest.raises(DownloadCancelled):
        download_checkpoint(INFO, tmp_path, base_url=server.url, cancel=lambda: True)
    assert not (tmp_path / INFO.file_name).exists()


def test_verified_file_is_not_downloaded_again(serve, tmp_path):
    (tmp_path / INFO.file_name).write_bytes(DATA)
    server = serve()
    assert download_checkpoint(INFO, tmp_path, base_url=server.url) == tmp_path / INFO.file_name
    assert server.requests == []


def test_corrupt_file_under_the_final_name_is_replaced(serve, tmp_path):
    bad = bytearray(DATA)
    bad[100] ^= 1
    (tmp_path / INFO.file_name).write_bytes(bytes(bad))
    server = serve()
    path = download_checkpoint(INFO, tmp_path, base_url=server.url)
    assert len(server.requests) == 1
    assert path.read_bytes() == DATA


def test_proxy_from_the_environment_is_used(serve, tmp_path, monkeypatch):
    proxy = serve()  # a plain HTTP proxy receives absolute URLs in the request line
    monkeypatch.setenv("http_proxy", proxy.url.split("/models/")[0])
    monkeypatch.delenv("no_proxy")
    monkeypatch.delenv("NO_PROXY")
    path = download_checkpoint(INFO, tmp_path, base_url="http://models.example.invalid/sam/")
    assert path.read_bytes() == DATA
    assert proxy.requests[0].path == "http://models.example.invalid/sam/" + INFO.file_name


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_tls_certificate_is_verified(tmp_path, monkeypatch):
    """A self-signed certificate is refused: verification is never turned off."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.delenv("SSL_CERT_DIR", raising=False)
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-subj", "/CN=127.0.0.1", "-keyout", str(key), "-out", str(cert)],
        check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server = FileServer({INFO.file_name: DATA}, ssl_context=context)
    dest = tmp_path / "dest"
    try:
        with pytest.raises(UserError, match="certificate"):
            download_checkpoint(INFO, dest, base_url=server.url, timeout=10)
    finally:
        server.close()
    assert not (dest / INFO.file_name).exists()


def test_eta_text():
    assert format_eta(None) == "—"
    assert format_eta(42.4) == "42 s"
    assert format_eta(190) == "3 min 10 s"
    assert format_eta(3900) == "1 h 05 min"


def test_a_folder_mirror_by_file_url(tmp_path):
    """Air-gapped sites: ANNOTATOR_MODEL_BASE_URL=file:///mnt/models/ works (no ranges there)."""
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / INFO.file_name).write_bytes(DATA)
    dest = tmp_path / "dest"
    dest.mkdir()
    part_path(dest / INFO.file_name).write_bytes(DATA[:1000])
    path = download_checkpoint(INFO, dest, base_url=mirror.as_uri() + "/")
    assert path.read_bytes() == DATA


# ------------------------------------------------- entries without a SHA-256 or an exact size


def _unhashed_entry(data: bytes, **changes):
    """A registry entry as one without a trustworthy SHA-256 looks: exact size, sha256 None."""
    import dataclasses

    from annotator.models.registry import NO_SHA256_NOTE

    entry = dataclasses.replace(
        registry_entry_for(data, file_name="sam_unhashed.pth", model_type="custom"),
        sha256=None,
        family="sam1",
        note=NO_SHA256_NOTE,
    )
    return dataclasses.replace(entry, **changes)


@pytest.fixture
def tiny_bytes(tiny_sam_checkpoint) -> bytes:
    # The tests' shrunk SAM: detected as a custom SAM 1 configuration.
    return tiny_sam_checkpoint.read_bytes()


def test_unhashed_entry_is_checked_by_size_and_a_weights_only_load(
    tiny_bytes, tmp_path, monkeypatch
):
    from annotator.engines import families

    entry = _unhashed_entry(tiny_bytes)
    real_read = families.read_state_dict
    calls = []

    def watched(path, *, mmap):
        # Before the rename: the bytes are still under the .part name, the final name is absent.
        calls.append((path.name, (tmp_path / entry.file_name).exists()))
        return real_read(path, mmap=mmap)

    monkeypatch.setattr(families, "read_state_dict", watched)
    server = FileServer({entry.file_name: tiny_bytes})
    try:
        path = download_checkpoint(entry, tmp_path, base_url=server.url)
    finally:
        server.close()
    assert calls == [(entry.file_name + ".part", False)]
    assert path.read_bytes() == tiny_bytes
    assert not part_path(path).exists()


def test_unhashed_download_that_does_not_load_is_deleted(tmp_path):
    junk = fake_checkpoint(50_000, seed=5)  # the right size, but not a PyTorch file
    entry = _unhashed_entry(junk)
    server = FileServer({entry.file_name: junk})
    try:
        with pytest.raises(UserError, match="does not load as a checkpoint") as caught:
            download_checkpoint(entry, tmp_path, base_url=server.url)
    finally:
        server.close()
    assert "it was deleted" in str(caught.value) and "\n" not in str(caught.value)
    assert list(tmp_path.iterdir()) == []


def test_unhashed_download_of_another_model_is_deleted(tiny_bytes, tmp_path):
    entry = _unhashed_entry(
        tiny_bytes, model_type="mobilesam_vit_t", family="mobilesam", title="MobileSAM (ViT-T)"
    )
    server = FileServer({entry.file_name: tiny_bytes})
    try:
        with pytest.raises(UserError, match=r"is a custom SAM checkpoint .*not MobileSAM"):
            download_checkpoint(entry, tmp_path, base_url=server.url)
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


def test_unhashed_download_of_the_wrong_size_is_refused(tiny_bytes, tmp_path):
    entry = _unhashed_entry(tiny_bytes, size_bytes=len(tiny_bytes) + 1)
    server = FileServer({entry.file_name: tiny_bytes})
    try:
        with pytest.raises(UserError, match="not the expected file"):
            download_checkpoint(entry, tmp_path, base_url=server.url)
    finally:
        server.close()
    assert list(tmp_path.iterdir()) == []


def test_an_unhashed_file_already_there_is_loaded_not_fetched_again(tiny_bytes, tmp_path):
    entry = _unhashed_entry(tiny_bytes)
    (tmp_path / entry.file_name).write_bytes(tiny_bytes)
    server = FileServer({entry.file_name: tiny_bytes})
    try:
        assert download_checkpoint(entry, tmp_path, base_url=server.url).is_file()
        assert server.requests == []
        (tmp_path / entry.file_name).write_bytes(b"\0" * len(tiny_bytes))  # same size, broken
        assert download_checkpoint(entry, tmp_path, base_url=server.url).read_bytes() == tiny_bytes
        assert len(server.requests) == 1
    finally:
        server.close()


def _unsized_entry():
    import dataclasses

    return dataclasses.replace(INFO, size_bytes=None, approx_bytes=600_000)


def test_without_an_exact_size_the_servers_length_and_the_sha256_decide(serve, tmp_path):
    entry = _unsized_entry()
    reports = []
    server = serve(drop_after=1000)
    with pytest.raises(UserError, match="run it again to resume"):
        download_checkpoint(entry, tmp_path, base_url=server.url)
    path = download_checkpoint(
        entry, tmp_path, base_url=server.url, progress=lambda *r: reports.append(r)
    )
    assert server.ranges == [None, "bytes=1000-"]
    assert path.read_bytes() == DATA
    assert reports[-1][:2] == (len(DATA), len(DATA))


def test_without_an_exact_size_wrong_bytes_are_still_refused(serve, tmp_path):
    server = serve(corrupt=True)
    with pytest.raises(UserError, match="corrupt"):
        download_checkpoint(_unsized_entry(), tmp_path, base_url=server.url)
    assert list(tmp_path.iterdir()) == []


def test_without_an_exact_size_a_whole_part_is_verified_after_a_416(serve, tmp_path):
    entry = _unsized_entry()
    part_path(tmp_path / entry.file_name).write_bytes(DATA)
    server = serve()
    path = download_checkpoint(entry, tmp_path, base_url=server.url)
    assert server.ranges == [f"bytes={len(DATA)}-"]  # answered 416: nothing left to send
    assert path.read_bytes() == DATA
