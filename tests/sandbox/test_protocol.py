"""mucode.sandbox.protocol: the truncation rule against hand-computed values, and message framing."""

from __future__ import annotations

import os

import pytest

from mucode.sandbox.protocol import HEADER, MAX_MESSAGE, clip, recv_message, send_message


@pytest.mark.parametrize("text, limit, expected", [
    ("abcdef", 6, "abcdef"),                # exactly at the limit: unchanged
    ("abcdefg", 6, "abc..."),               # one over: limit - 3 characters and "..."
    ("hello world", 8, "hello..."),
    ("", 0, ""),
    ("ab", 2, "ab"),
    ("abc", 2, "..."),                      # below 3 the "..." alone is over the limit
    ("x" * 1001, 1000, "x" * 997 + "..."),
    ("héllo wörld", 7, "héll..."),          # characters, not bytes
])
def test_clip(text, limit, expected):
    assert clip(text, limit) == expected


def test_a_message_round_trips_and_the_end_of_stream_is_none():
    r, w = os.pipe()
    send_message(w, {"program": "x = 'é'\n", "tests": ["assert x"], "n_public": 1})
    os.close(w)
    assert recv_message(r) == {"program": "x = 'é'\n", "tests": ["assert x"], "n_public": 1}
    assert recv_message(r) is None
    os.close(r)


def test_a_cut_or_oversized_message():
    r, w = os.pipe()
    os.write(w, HEADER.pack(10) + b"{}")  # promises 10 bytes, then the stream ends
    os.close(w)
    assert recv_message(r) is None
    os.close(r)
    r, w = os.pipe()
    os.write(w, HEADER.pack(MAX_MESSAGE + 1))
    with pytest.raises(ValueError, match="over the"):
        recv_message(r)
    os.close(r)
    os.close(w)
