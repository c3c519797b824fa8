"""The loopback mirror serves what it holds, 404s the rest, and truncates when asked."""

from __future__ import annotations

import http.client
import urllib.error
import urllib.request

import pytest

from tests.harness import mirror


def test_serves_files_on_loopback_and_404s_the_rest() -> None:
    with mirror.serve_files({"a.txt": b"hello"}) as url:
        assert url.startswith("http://127.0.0.1:")
        with urllib.request.urlopen(url + "a.txt", timeout=10) as response:
            assert response.read() == b"hello"
            assert response.headers["Content-Length"] == "5"
        with pytest.raises(urllib.error.HTTPError) as missing:
            urllib.request.urlopen(url + "b.txt", timeout=10)
        assert missing.value.code == 404
    with pytest.raises(urllib.error.URLError):  # stopped when the block ends
        urllib.request.urlopen(url + "a.txt", timeout=2)


def test_truncate_sends_half_with_the_full_length() -> None:
    with (
        mirror.serve_files({"a.bin": bytes(range(100))}, truncate=True) as url,
        urllib.request.urlopen(url + "a.bin", timeout=10) as response,
    ):
        assert response.headers["Content-Length"] == "100"
        with pytest.raises(http.client.IncompleteRead) as short:
            response.read()
    assert len(short.value.partial) == 50
