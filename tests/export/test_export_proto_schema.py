"""``export.proto`` is the schema of record; the runtime descriptors must say exactly the same thing.

The parser below reads the small proto2 subset the file uses (messages, one nested enum, optional/repeated
fields with ``default``/``deprecated`` options, ``reserved``) into a FileDescriptorProto, so the check runs
everywhere without protoc. Where grpcio-tools is installed, protoc's own output is compared as well.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import descriptor_pb2

from agent.protocol.proto import gaen_export as pb
from agent.protocol.proto.gaen_export import PROTO_FILE_NAME, file_descriptor_proto

ROOT = Path(__file__).resolve().parents[2]
PROTO = ROOT / PROTO_FILE_NAME
_F = descriptor_pb2.FieldDescriptorProto
_SCALARS = {
    "fixed64": _F.TYPE_FIXED64,
    "string": _F.TYPE_STRING,
    "int32": _F.TYPE_INT32,
    "sint32": _F.TYPE_SINT32,
    "bytes": _F.TYPE_BYTES,
}
_LABELS = {"optional": _F.LABEL_OPTIONAL, "repeated": _F.LABEL_REPEATED}


def parse_proto(text: str) -> descriptor_pb2.FileDescriptorProto:
    text = re.sub(r"//[^\n]*", "", text)
    tokens = re.findall(r'"[^"]*"|[A-Za-z_][\w.]*|-?\d+|[{}=;\[\],]', text)
    fdp = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE_NAME)
    pos = 0

    def take(expected: str | None = None) -> str:
        nonlocal pos
        token = tokens[pos]
        pos += 1
        assert expected is None or token == expected, f"expected {expected!r}, got {token!r}"
        return token

    enums: dict[str, str] = {}  # enum name -> full type name
    pending: list[tuple[descriptor_pb2.FieldDescriptorProto, str]] = []
    assert [take(), take(), take(), take()] == ["syntax", "=", '"proto2"', ";"]
    while pos < len(tokens):
        take("message")
        msg = fdp.message_type.add(name=take())
        take("{")
        while tokens[pos] != "}":
            word = take()
            if word == "reserved":
                while (token := take()) != ";":
                    if token.isdigit():
                        msg.reserved_range.add(start=int(token), end=int(token) + 1)
                    elif token.startswith('"'):
                        msg.reserved_name.append(token.strip('"'))
            elif word == "enum":
                enum = msg.enum_type.add(name=take())
                enums[enum.name] = f".{msg.name}.{enum.name}"
                take("{")
                while tokens[pos] != "}":
                    name = take()
                    take("=")
                    enum.value.add(name=name, number=int(take()))
                    take(";")
                take("}")
            else:
                type_word, name = take(), take()
                take("=")
                field = msg.field.add(name=name, number=int(take()), label=_LABELS[word])
                if type_word in _SCALARS:
                    field.type = _SCALARS[type_word]
                else:
                    pending.append((field, type_word))
                if tokens[pos] == "[":
                    take("[")
                    option = take()
                    take("=")
                    value = take()
                    if option == "default":
                        field.default_value = value
                    else:
                        assert (option, value) == ("deprecated", "true")
                        field.options.deprecated = True
                    take("]")
                take(";")
        take("}")
    for field, type_word in pending:
        if type_word in enums:
            field.type, field.type_name = _F.TYPE_ENUM, enums[type_word]
        else:
            field.type, field.type_name = _F.TYPE_MESSAGE, f".{type_word}"
    return fdp


def test_runtime_descriptors_match_the_proto_file() -> None:
    assert parse_proto(PROTO.read_text()) == file_descriptor_proto()


def test_runtime_descriptors_match_protoc_output(tmp_path: Path) -> None:
    pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools not installed (optional cross-check)")
    out = tmp_path / "export.pb"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{ROOT}",
            f"--descriptor_set_out={out}",
            PROTO_FILE_NAME,
        ],
        check=True,
        cwd=ROOT,
    )
    (compiled,) = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file
    for message in compiled.message_type:
        for field in message.field:
            field.ClearField("json_name")
    assert compiled == file_descriptor_proto()


def test_wire_encoding_follows_the_format() -> None:
    """Tags and wire types from the format: fixed64 timestamps, zigzag days since onset, enum report type."""
    key = pb.TemporaryExposureKey(
        key_data=b"\x01" * 16,
        transmission_risk_level=3,
        rolling_start_interval_number=2_650_000,
        rolling_period=144,
        report_type=1,
        days_since_onset_of_symptoms=-2,
    )
    assert key.SerializeToString() == (
        b"\x0a\x10"
        + b"\x01" * 16  # 1: bytes
        + b"\x10\x03"  # 2: varint
        + b"\x18\x90\xdf\xa1\x01"  # 3: varint 2650000
        + b"\x20\x90\x01"  # 4: varint 144
        + b"\x28\x01"  # 5: enum CONFIRMED_TEST
        + b"\x30\x03"  # 6: sint32 -2, zigzag-encoded as 3
    )
    export = pb.TemporaryExposureKeyExport(start_timestamp=1, end_timestamp=2**64 - 1, region="CH")
    export.revised_keys.add(key_data=b"")
    assert export.SerializeToString() == (
        b"\x09"
        + (1).to_bytes(8, "little")  # 1: fixed64
        + b"\x11"
        + b"\xff" * 8  # 2: fixed64
        + b"\x1a\x02CH"  # 3: string
        + b"\x42\x02\x0a\x00"  # 8: revised_keys, a message holding an empty key_data
    )


def test_rolling_period_defaults_to_a_day() -> None:
    assert pb.TemporaryExposureKey().rolling_period == 144
