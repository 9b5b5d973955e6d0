"""Form parsing: one URL-decode, the form's own charset, no ambiguity."""

from __future__ import annotations

import pytest

from channels.alipay import FormError, encode_form, parse_form


def test_values_are_decoded_exactly_once() -> None:
    form = parse_form(b"a=%2541&b=x+y&c=%2B&d=")
    assert form.fields == {"a": "%41", "b": "x y", "c": "+", "d": ""}


def test_charset_field_selects_the_codec() -> None:
    body = encode_form({"charset": "GBK", "subject": "汽油"}, "gbk")
    form = parse_form(body)
    assert (form.charset, form.fields["subject"]) == ("gbk", "汽油")


def test_encode_parse_round_trip_keeps_special_characters() -> None:
    fields = {"sign": "ab+/cd==", "biz": '{"a":"&=?%"}', "name": "一号站 S001"}
    assert parse_form(encode_form(fields)).fields == fields


@pytest.mark.parametrize(
    ("body", "reason"),
    [
        (b"a=1&a=1", "duplicate_field"),
        (b"a=1&%61=2", "duplicate_field"),  # the same name, escaped
        (b"=1", "bad_form"),
        (b"&&", "bad_form"),
        (b"a=1&charset=latin-9", "bad_charset"),
        (b"a=%FF", "bad_encoding"),
        (b"%E4%B8%AD=1", "bad_form"),
    ],
)
def test_ambiguous_or_broken_forms_are_refused(body: bytes, reason: str) -> None:
    with pytest.raises(FormError) as caught:
        parse_form(body)
    assert caught.value.reason == reason


def test_too_many_fields_are_refused() -> None:
    body = "&".join(f"f{i}=1" for i in range(300)).encode()
    with pytest.raises(FormError):
        parse_form(body)
