"""Lone surrogates become U+FFFD; everything else is kept as it is."""

from __future__ import annotations

from agentrun_core.well_formed import well_formed, well_formed_value


def test_a_lone_surrogate_is_replaced_and_a_pair_becomes_its_character() -> None:
    assert well_formed("lone:\udc80 \ud800") == "lone:\ufffd \ufffd"
    assert well_formed("\ud83d\ude00") == "\U0001f600"
    assert well_formed("plain ascii") == "plain ascii"
    assert well_formed("déjà vu \U0001f600") == "déjà vu \U0001f600"
    assert well_formed("lone:\udc80").encode() == "lone:\ufffd".encode()


def test_every_string_of_a_json_value_keys_too() -> None:
    value = {"k\udc80": ["v\ud800", 1, 2.5, None, True, {"n": "ok"}]}
    assert well_formed_value(value) == {"k\ufffd": ["v\ufffd", 1, 2.5, None, True, {"n": "ok"}]}
