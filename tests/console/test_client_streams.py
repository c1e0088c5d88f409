"""The console client's streamed answers (the export download, the event streams) when the
connection fails: a refusal is its ApiError, a connection lost before or while the answer is
read is BackendUnreachable with words a person can read, never a raw requests error.

The peer is a real socket that answers a fixed HTTP exchange and then drops the connection:
the only way to cut a chunked answer at a chosen byte."""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from backend.schemas.exports import ExportRequest
from console.client import ApiClient, ApiError, BackendUnreachable


def _chunk(data: bytes) -> bytes:
    return f"{len(data):x}\r\n".encode() + data + b"\r\n"


class _CutPeer:
    """Accepts one connection at a time, reads the request head, sends ``answer`` and
    closes: a chunked body without its last chunk is a connection lost mid-answer."""

    def __init__(self, answer: bytes):
        self.answer = answer
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.listener.accept()
            except OSError:
                return
            with conn:
                received = b""
                while b"\r\n\r\n" not in received:
                    part = conn.recv(65536)
                    if not part:
                        break
                    received += part
                conn.sendall(self.answer)

    def close(self) -> None:
        self.listener.close()


CutPeer = Callable[[bytes], _CutPeer]


@pytest.fixture
def cut_peer() -> Iterator[CutPeer]:
    peers: list[_CutPeer] = []

    def make(answer: bytes) -> _CutPeer:
        peer = _CutPeer(answer)
        peers.append(peer)
        return peer

    yield make
    for peer in peers:
        peer.close()


HEAD_200 = (
    b"HTTP/1.1 200 OK\r\nContent-Type: application/zip\r\nTransfer-Encoding: chunked\r\n"
    b"X-Export-Rows-Read: 12\r\nConnection: close\r\n\r\n"
)
HEAD_403 = (
    b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/json\r\n"
    b"Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
)
CUT_OFF = "the connection to the backend was lost while its answer was read"
REFUSAL = b'{"error": "this token may not export", "field": "token", "reason": "role"}'


def _download(url: str, target: Path) -> int | None:
    client = ApiClient(url, "sdk_test", timeout_s=5)
    return client.download_export(
        ExportRequest(model="toy"), target, lambda _size, _rows: None, lambda: False
    )


def test_a_refused_export_is_its_api_error(cut_peer: CutPeer, tmp_path: Path) -> None:
    peer = cut_peer(HEAD_403 + _chunk(REFUSAL) + b"0\r\n\r\n")
    with pytest.raises(ApiError) as refused:
        _download(peer.url, tmp_path / "export.part")
    assert not isinstance(refused.value, BackendUnreachable)
    assert refused.value.status == 403 and "may not export" in str(refused.value)
    assert not (tmp_path / "export.part").exists()


def test_an_export_cut_while_it_is_received_is_backend_unreachable(
    cut_peer: CutPeer, tmp_path: Path
) -> None:
    # Cut inside a chunk, then between chunks (no last chunk).
    for answer in (HEAD_200 + b"fa0\r\nPK", HEAD_200 + _chunk(b"PK" + b"x" * 4000)):
        peer = cut_peer(answer)
        with pytest.raises(BackendUnreachable) as lost:
            _download(peer.url, tmp_path / "export.part")
        # Words for a person, not the repr of urllib3's IncompleteRead.
        assert str(lost.value) == CUT_OFF


def test_a_refusal_cut_while_its_reason_is_read_is_backend_unreachable(
    cut_peer: CutPeer, tmp_path: Path
) -> None:
    peer = cut_peer(HEAD_403 + f"{len(REFUSAL):x}\r\n".encode() + REFUSAL[:10])
    with pytest.raises(BackendUnreachable) as lost:
        _download(peer.url, tmp_path / "export.part")
    assert str(lost.value) == CUT_OFF


def test_an_event_stream_refused_or_cut_says_which(cut_peer: CutPeer) -> None:
    stop = threading.Event()
    refused = cut_peer(HEAD_403 + _chunk(REFUSAL) + b"0\r\n\r\n")
    with pytest.raises(ApiError) as error:
        list(ApiClient(refused.url, "sdk_test", timeout_s=5).stream_alerts(None, stop))
    assert error.value.status == 403
    events = b": keep-alive\n\n"
    cut = cut_peer(HEAD_200.replace(b"application/zip", b"text/event-stream") + _chunk(events))
    with pytest.raises(BackendUnreachable) as lost:
        list(ApiClient(cut.url, "sdk_test", timeout_s=5).stream_alerts(None, stop))
    assert str(lost.value) == CUT_OFF
