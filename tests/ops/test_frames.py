"""The sans-IO frame codec, without trio: splits, batches, empty frames, oversized headers."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from ops.admin import FrameDecoder, FrameTooLarge, encode_frame
from ops.admin.frames import HEADER

payloads = st.lists(st.binary(max_size=300), max_size=20)


def drain(decoder: FrameDecoder) -> list[bytes]:
    frames = []
    while (frame := decoder.next_frame()) is not None:
        frames.append(frame)
    return frames


@settings(max_examples=300)
@given(payloads, st.data())
def test_any_split_of_the_stream_gives_back_the_same_frames(
    frames: list[bytes], data: st.DataObject
) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = FrameDecoder(1024)
    out: list[bytes] = []
    for start, end in zip([0, *cuts], [*cuts, len(stream)], strict=True):
        decoder.feed(stream[start:end])
        out.extend(drain(decoder))
    assert out == frames
    assert decoder.pending == 0


@given(payloads)
def test_one_byte_at_a_time(frames: list[bytes]) -> None:
    stream = b"".join(encode_frame(f) for f in frames)
    decoder = FrameDecoder(1024)
    out: list[bytes] = []
    for i in range(len(stream)):
        decoder.feed(stream[i : i + 1])
        out.extend(drain(decoder))
    assert out == frames


def test_several_frames_in_one_chunk_come_out_in_order() -> None:
    decoder = FrameDecoder(100)
    decoder.feed(encode_frame(b"one") + encode_frame(b"two") + encode_frame(b"three")[:5])
    assert drain(decoder) == [b"one", b"two"]
    assert decoder.pending == 5
    decoder.feed(encode_frame(b"three")[5:])
    assert drain(decoder) == [b"three"]


def test_an_empty_frame_is_a_frame() -> None:
    decoder = FrameDecoder(10)
    decoder.feed(encode_frame(b"") + encode_frame(b""))
    assert drain(decoder) == [b"", b""]
    assert encode_frame(b"") == b"\x00\x00\x00\x00"


def test_a_partial_header_waits_for_more() -> None:
    decoder = FrameDecoder(10)
    decoder.feed(b"\x00\x00")
    assert decoder.next_frame() is None
    assert decoder.pending == 2


def test_a_frame_at_the_limit_is_fine() -> None:
    decoder = FrameDecoder(5)
    decoder.feed(encode_frame(b"12345"))
    assert drain(decoder) == [b"12345"]


def test_an_oversized_header_fails_before_its_body_arrives() -> None:
    decoder = FrameDecoder(65_536)
    decoder.feed(encode_frame(b"ok") + HEADER.pack(65_537))
    assert decoder.next_frame() == b"ok"
    with pytest.raises(FrameTooLarge) as caught:
        decoder.next_frame()
    assert (caught.value.size, caught.value.limit) == (65_537, 65_536)
    assert decoder.pending == 0  # nothing kept
    decoder.feed(b"x" * 1000)  # the body, should it come, is ignored
    assert decoder.pending == 0
    with pytest.raises(FrameTooLarge):
        decoder.next_frame()  # the framing is lost for good


def test_the_encoder_enforces_a_limit_when_given_one() -> None:
    with pytest.raises(FrameTooLarge):
        encode_frame(b"x" * 11, limit=10)
    assert encode_frame(b"x" * 10, limit=10)[:4] == HEADER.pack(10)


def test_a_long_stream_in_one_chunk_compacts_and_still_decodes() -> None:
    frames = [bytes([i]) * (1000 + 97 * i) for i in range(60)]  # ~230 KB in all
    decoder = FrameDecoder(10_000)
    decoder.feed(b"".join(encode_frame(f) for f in frames))
    assert drain(decoder) == frames
    assert decoder.pending == 0
