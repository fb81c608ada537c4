"""Message classes for the GAEN export file, built at import time from descriptors written out in Python.

Why not checked-in ``*_pb2.py``: the only protoc at hand (grpcio-tools 1.85) stamps its gencode with a
runtime check that refuses any protobuf runtime older than the protoc that wrote it (7.35) and warns on
the next major, which would pin the project's ``protobuf>=4.25`` to a single major. A
``FileDescriptorProto`` is plain data that every runtime from 4.25 on accepts, so the schema here works
across the whole declared range with no generated artefact and no build step. ``export.proto`` stays the
schema of record; a test checks this module against it field by field (and against protoc's own output
when grpcio-tools is installed). The descriptors go into a private pool so they cannot clash with another
package that registers the same (package-less) message names in the default pool.
"""

from __future__ import annotations

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory
from google.protobuf.message import Message

PROTO_FILE_NAME = "agent/protocol/proto/export.proto"

_F = descriptor_pb2.FieldDescriptorProto
_OPTIONAL = _F.LABEL_OPTIONAL
_REPEATED = _F.LABEL_REPEATED


def _field(
    msg: descriptor_pb2.DescriptorProto,
    name: str,
    number: int,
    ftype: int,
    label: int = _OPTIONAL,
    *,
    type_name: str | None = None,
    default: str | None = None,
    deprecated: bool = False,
) -> None:
    f = msg.field.add(name=name, number=number, type=ftype, label=label)
    if type_name is not None:
        f.type_name = type_name
    if default is not None:
        f.default_value = default
    if deprecated:
        f.options.deprecated = True


def file_descriptor_proto() -> descriptor_pb2.FileDescriptorProto:
    """The schema of ``export.proto`` as a descriptor (what protoc would produce, minus source info)."""
    fdp = descriptor_pb2.FileDescriptorProto(name=PROTO_FILE_NAME)  # no syntax field means proto2

    export = fdp.message_type.add(name="TemporaryExposureKeyExport")
    _field(export, "start_timestamp", 1, _F.TYPE_FIXED64)
    _field(export, "end_timestamp", 2, _F.TYPE_FIXED64)
    _field(export, "region", 3, _F.TYPE_STRING)
    _field(export, "batch_num", 4, _F.TYPE_INT32)
    _field(export, "batch_size", 5, _F.TYPE_INT32)
    _field(export, "signature_infos", 6, _F.TYPE_MESSAGE, _REPEATED, type_name=".SignatureInfo")
    _field(export, "keys", 7, _F.TYPE_MESSAGE, _REPEATED, type_name=".TemporaryExposureKey")
    _field(export, "revised_keys", 8, _F.TYPE_MESSAGE, _REPEATED, type_name=".TemporaryExposureKey")

    info = fdp.message_type.add(name="SignatureInfo")
    for number in (1, 2):  # one range per number, end exclusive, as protoc writes "reserved 1, 2"
        info.reserved_range.add(start=number, end=number + 1)
    info.reserved_name.extend(["app_bundle_id", "android_package"])
    _field(info, "verification_key_version", 3, _F.TYPE_STRING)
    _field(info, "verification_key_id", 4, _F.TYPE_STRING)
    _field(info, "signature_algorithm", 5, _F.TYPE_STRING)

    key = fdp.message_type.add(name="TemporaryExposureKey")
    _field(key, "key_data", 1, _F.TYPE_BYTES)
    _field(key, "transmission_risk_level", 2, _F.TYPE_INT32, deprecated=True)
    _field(key, "rolling_start_interval_number", 3, _F.TYPE_INT32)
    _field(key, "rolling_period", 4, _F.TYPE_INT32, default="144")
    report_type = key.enum_type.add(name="ReportType")
    for number, name in enumerate(
        ("UNKNOWN", "CONFIRMED_TEST", "CONFIRMED_CLINICAL_DIAGNOSIS", "SELF_REPORT", "RECURSIVE", "REVOKED")
    ):
        report_type.value.add(name=name, number=number)
    _field(key, "report_type", 5, _F.TYPE_ENUM, type_name=".TemporaryExposureKey.ReportType")
    _field(key, "days_since_onset_of_symptoms", 6, _F.TYPE_SINT32)

    sig_list = fdp.message_type.add(name="TEKSignatureList")
    _field(sig_list, "signatures", 1, _F.TYPE_MESSAGE, _REPEATED, type_name=".TEKSignature")

    sig = fdp.message_type.add(name="TEKSignature")
    _field(sig, "signature_info", 1, _F.TYPE_MESSAGE, type_name=".SignatureInfo")
    _field(sig, "batch_num", 2, _F.TYPE_INT32)
    _field(sig, "batch_size", 3, _F.TYPE_INT32)
    _field(sig, "signature", 4, _F.TYPE_BYTES)
    return fdp


def _build_classes() -> dict[str, type[Message]]:
    pool = descriptor_pool.DescriptorPool()
    pool.AddSerializedFile(file_descriptor_proto().SerializeToString())
    names = (
        "TemporaryExposureKeyExport",
        "SignatureInfo",
        "TemporaryExposureKey",
        "TEKSignatureList",
        "TEKSignature",
    )
    return {name: message_factory.GetMessageClass(pool.FindMessageTypeByName(name)) for name in names}


_CLASSES = _build_classes()

TemporaryExposureKeyExport: type[Message] = _CLASSES["TemporaryExposureKeyExport"]
SignatureInfo: type[Message] = _CLASSES["SignatureInfo"]
TemporaryExposureKey: type[Message] = _CLASSES["TemporaryExposureKey"]
TEKSignatureList: type[Message] = _CLASSES["TEKSignatureList"]
TEKSignature: type[Message] = _CLASSES["TEKSignature"]
