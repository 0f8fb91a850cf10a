"""Hypothesis strategies for request messages, built field by field from their descriptors: unicode, huge and
negative numbers, unknown enum values, injection-shaped filters, forged page tokens; and raw bytes that are not a
message at all (random, truncated, a string field that is not UTF-8)."""

from __future__ import annotations

from typing import Any

from google.protobuf.descriptor import Descriptor, FieldDescriptor
from hypothesis import strategies as st

F = FieldDescriptor
TRICKY_STRINGS = [
    "",
    " ",
    "echo",
    "test",
    "0190a0f0-0000-7000-8000-000000000001",
    'agent_name = "x\' OR 1=1 --"',
    "status = COMPLETED AND total_tokens > 9223372036854775807",
    'start_time > "2026-13-45T99:99:99Z"',
    'labels.a = "b" OR NOT (',
    "((((((((((((((((((((a = 1))))))))))))))))))))",
    "duration desc",
    "cost asc, start_time",
    "eyJyIjoiYWJjIiwicCI6e319AAAAAAAAAAAAAAAAAAAA",
    "\x00",
    "\ud7ff\ue000\U0010ffff",
    "x" * 5000,
]
_INTS = {
    F.TYPE_INT32: (-(2**31), 2**31 - 1),
    F.TYPE_SINT32: (-(2**31), 2**31 - 1),
    F.TYPE_SFIXED32: (-(2**31), 2**31 - 1),
    F.TYPE_INT64: (-(2**63), 2**63 - 1),
    F.TYPE_SINT64: (-(2**63), 2**63 - 1),
    F.TYPE_SFIXED64: (-(2**63), 2**63 - 1),
    F.TYPE_UINT32: (0, 2**32 - 1),
    F.TYPE_FIXED32: (0, 2**32 - 1),
    F.TYPE_UINT64: (0, 2**64 - 1),
    F.TYPE_FIXED64: (0, 2**64 - 1),
}


def _scalar(field: FieldDescriptor) -> st.SearchStrategy[Any]:
    if field.type == F.TYPE_STRING:
        return st.one_of(st.sampled_from(TRICKY_STRINGS), st.text(max_size=40))
    if field.type == F.TYPE_BYTES:
        return st.binary(max_size=40)
    if field.type in _INTS:
        low, high = _INTS[field.type]
        return st.one_of(st.integers(low, high), st.sampled_from([low, high, 0, -1 if low < 0 else 1]))
    if field.type == F.TYPE_DOUBLE:
        return st.floats()
    if field.type == F.TYPE_FLOAT:
        return st.floats(width=32)
    if field.type == F.TYPE_BOOL:
        return st.booleans()
    if field.type == F.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), st.integers(-(2**31), 2**31 - 1))
    raise AssertionError(f"unhandled field type {field.type}")


def _nested(descriptor: Descriptor, depth: int) -> st.SearchStrategy[dict[str, Any]]:
    def build() -> st.SearchStrategy[dict[str, Any]]:
        return message_dicts(descriptor, depth)

    return st.deferred(build)


def message_dicts(descriptor: Descriptor, depth: int = 0) -> st.SearchStrategy[dict[str, Any]]:
    """Constructor kwargs for `descriptor`: any subset of fields, each with a random value of its type."""
    if descriptor.full_name in ("google.protobuf.Timestamp", "google.protobuf.Duration"):
        return st.fixed_dictionaries(
            {},
            optional={
                "seconds": st.integers(-(2**40), 2**40),
                "nanos": st.integers(-(2**31), 2**31 - 1),
            },
        )
    optional: dict[str, st.SearchStrategy[Any]] = {}
    for field in descriptor.fields:
        if field.type == F.TYPE_MESSAGE:
            sub = field.message_type
            if sub.GetOptions().map_entry:
                key, value = sub.fields_by_name["key"], sub.fields_by_name["value"]
                if value.type == F.TYPE_MESSAGE:
                    continue
                optional[field.name] = st.dictionaries(_scalar(key), _scalar(value), max_size=3)
                continue
            if depth >= 2 or (
                sub.full_name.startswith("google.protobuf.")
                and "Timestamp" not in sub.full_name
                and "Duration" not in sub.full_name
            ):
                continue
            strategy: st.SearchStrategy[Any] = _nested(sub, depth + 1)
        else:
            strategy = _scalar(field)
        if field.is_repeated:
            strategy = st.lists(strategy, max_size=3)
        optional[field.name] = strategy
    return st.fixed_dictionaries({}, optional=optional)


def _varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte, value = value & 0x7F, value >> 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def _string_fields(descriptor: Descriptor) -> list[int]:
    return [f.number for f in descriptor.fields if f.type == F.TYPE_STRING]


def raw_requests(descriptor: Descriptor) -> st.SearchStrategy[bytes]:
    """Bytes sent as a `descriptor` request: random bytes; a valid encoding cut short, with bytes flipped, or with
    a string field that is not UTF-8 appended; and valid encodings (the call must then work or fail on purpose)."""
    from google.protobuf import message_factory

    message = message_factory.GetMessageClass(descriptor)
    valid = message_dicts(descriptor).map(lambda fields: message(**fields).SerializeToString())

    def truncated(data: st.DataObject, raw: bytes) -> bytes:
        return raw[: data.draw(st.integers(0, max(0, len(raw) - 1)))] if raw else b"\x0a\x05ab"

    def flipped(data: st.DataObject, raw: bytes) -> bytes:
        if not raw:
            return b"\x08" + b"\xff" * 11
        index = data.draw(st.integers(0, len(raw) - 1))
        return raw[:index] + bytes([data.draw(st.integers(0, 255))]) + raw[index + 1 :]

    def not_utf8(data: st.DataObject, raw: bytes) -> bytes:
        numbers = _string_fields(descriptor) or [1]
        number = data.draw(st.sampled_from(numbers))
        junk = data.draw(st.sampled_from([b"\xff", b"\xfe\xff", b"\xc0\x80", b"\xed\xa0\x80", b"a\x80b"]))
        return raw + _varint(number << 3 | 2) + _varint(len(junk)) + junk

    @st.composite
    def mutated(draw: st.DrawFn) -> bytes:
        data = draw(st.data())
        raw = draw(valid)
        mutate = draw(st.sampled_from([truncated, flipped, not_utf8]))
        return mutate(data, raw)

    return st.one_of(st.binary(max_size=200), mutated(), valid)
