#!/usr/bin/env python3
"""An independent reader of TensorBoard event files, written from the format description and
sharing no code with Switchyard: TFRecord framing (u64 length LE, masked CRC-32C of the
8 length bytes, data, masked CRC-32C of the data) around TensorFlow Event messages, decoded
with Python's protobuf runtime (Debian's python3-protobuf) from a descriptor built here.

Usage: tensorboard_reader.py EVENT_FILE
Prints one JSON object per line: {"wall_time", "step", "file_version"} for a file-version
event and {"wall_time", "step", "tag", "value"} for each scalar. Exits 1, naming the byte
offset, on a bad CRC, a truncated record or an event it cannot decode.
"""
import json
import struct
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory


def crc32c(data):
    """CRC-32C (Castagnoli), bit by bit: reflected polynomial 0x82F63B78."""
    crc = 0xFFFFFFFF
    for byte in data:
        crc ^= byte
        for _ in range(8):
            crc = (crc >> 1) ^ (0x82F63B78 if crc & 1 else 0)
    return crc ^ 0xFFFFFFFF


def masked_crc32c(data):
    crc = crc32c(data)
    return ((((crc >> 15) | (crc << 17)) & 0xFFFFFFFF) + 0xA282EAD8) & 0xFFFFFFFF


def event_class():
    """tensorflow/core/util/event.proto and summary.proto, the fields a scalar uses."""
    T = descriptor_pb2.FieldDescriptorProto
    proto = descriptor_pb2.FileDescriptorProto(name="reader/event.proto", package="reader", syntax="proto3")

    summary = proto.message_type.add(name="Summary")
    value = summary.nested_type.add(name="Value")
    value.oneof_decl.add(name="value")
    value.field.add(name="tag", number=1, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL)
    value.field.add(name="simple_value", number=2, type=T.TYPE_FLOAT, label=T.LABEL_OPTIONAL, oneof_index=0)
    summary.field.add(name="value", number=1, type=T.TYPE_MESSAGE, label=T.LABEL_REPEATED,
                      type_name=".reader.Summary.Value")

    event = proto.message_type.add(name="Event")
    event.oneof_decl.add(name="what")
    event.field.add(name="wall_time", number=1, type=T.TYPE_DOUBLE, label=T.LABEL_OPTIONAL)
    event.field.add(name="step", number=2, type=T.TYPE_INT64, label=T.LABEL_OPTIONAL)
    event.field.add(name="file_version", number=3, type=T.TYPE_STRING, label=T.LABEL_OPTIONAL, oneof_index=0)
    event.field.add(name="summary", number=5, type=T.TYPE_MESSAGE, label=T.LABEL_OPTIONAL,
                    type_name=".reader.Summary", oneof_index=0)

    pool = descriptor_pool.DescriptorPool()
    pool.Add(proto)
    descriptor = pool.FindMessageTypeByName("reader.Event")
    if hasattr(message_factory, "GetMessageClass"):  # protobuf >= 4.22
        return message_factory.GetMessageClass(descriptor)
    return message_factory.MessageFactory(pool).GetPrototype(descriptor)


def records(data):
    """Yields (offset, payload) for each TFRecord, checking both CRCs."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < 12:
            raise ValueError(f"offset {offset}: truncated record header ({len(data) - offset} bytes)")
        length_bytes = data[offset:offset + 8]
        (length,) = struct.unpack("<Q", length_bytes)
        (length_crc,) = struct.unpack("<I", data[offset + 8:offset + 12])
        if length_crc != masked_crc32c(length_bytes):
            raise ValueError(f"offset {offset}: length CRC mismatch")
        end = offset + 12 + length + 4
        if end > len(data):
            raise ValueError(f"offset {offset}: record of {length} bytes runs past the end of the file")
        payload = data[offset + 12:offset + 12 + length]
        (payload_crc,) = struct.unpack("<I", data[end - 4:end])
        if payload_crc != masked_crc32c(payload):
            raise ValueError(f"offset {offset}: data CRC mismatch")
        yield offset, payload
        offset = end


def main():
    if len(sys.argv) != 2:
        sys.exit(f"usage: {sys.argv[0]} EVENT_FILE")
    Event = event_class()
    with open(sys.argv[1], "rb") as f:
        data = f.read()
    try:
        for offset, payload in records(data):
            event = Event()
            event.ParseFromString(payload)
            what = event.WhichOneof("what")
            if what == "file_version":
                print(json.dumps({"wall_time": event.wall_time, "step": event.step,
                                  "file_version": event.file_version}))
            elif what == "summary":
                for value in event.summary.value:
                    if value.WhichOneof("value") != "simple_value":
                        raise ValueError(f"offset {offset}: summary value '{value.tag}' is not a scalar")
                    print(json.dumps({"wall_time": event.wall_time, "step": event.step,
                                      "tag": value.tag, "value": value.simple_value}))
            else:
                raise ValueError(f"offset {offset}: event has neither file_version nor summary")
    except Exception as error:  # noqa: BLE001 - the message is the point
        sys.exit(f"{sys.argv[1]}: {error}")


if __name__ == "__main__":
    main()
