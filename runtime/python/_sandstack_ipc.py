"""Encodes a pandas DataFrame as an Arrow IPC stream (a Schema message and one RecordBatch
message) from numpy buffers, for hosts that want Arrow IPC rather than sandstack's columnar
frame (`result_format: arrow_ipc`). The guest has no pyarrow or flatbuffers, so the few
flatbuffer tables the two messages need are written by hand: parents before children, so
every offset points forward, each field aligned to its size, as the format requires.

Types: float64, int64, bool (bit-packed), timestamp (unit, zone), utf8 (text is factorized,
then each row's bytes are gathered with numpy, not a Python loop over rows).
"""

import struct

import numpy as np
import pandas as pd

_api = pd.api.types

# Flatbuffer union tags and enums from Arrow's Schema.fbs and Message.fbs.
_TYPE_INT, _TYPE_FLOAT, _TYPE_UTF8, _TYPE_BOOL, _TYPE_TIMESTAMP = 2, 3, 5, 6, 10
_HEADER_SCHEMA, _HEADER_RECORD_BATCH = 1, 3
_METADATA_V5 = 4
_UNITS = {"s": 0, "ms": 1, "us": 2, "ns": 3}
_SIZES = {"i64": 8, "i32": 4, "off": 4, "i16": 2, "u8": 1, "bool": 1}
_FORMATS = {"i64": "<q", "i32": "<i", "i16": "<h", "u8": "<B", "bool": "<?"}


class _Flatbuffer:
    def __init__(self):
        self.buf = bytearray(4)  # root offset, patched last

    def _pad(self, align, extra=0):
        while (len(self.buf) + extra) % align:
            self.buf.append(0)

    def _child(self, child):
        kind, value = child
        if kind == "str":
            return self._string(value)
        if kind == "table":
            return self._table(value)
        if kind == "tables":
            return self._table_vector(value)
        if kind == "structs":
            return self._struct_vector(*value)
        raise ValueError(kind)

    def _string(self, text):
        data = text.encode("utf-8")
        self._pad(4)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(data)) + data + b"\0"
        return pos

    def _struct_vector(self, count, raw):
        self._pad(8, 4)  # elements (8-byte structs) start 8-aligned after the length
        pos = len(self.buf)
        self.buf += struct.pack("<I", count) + raw
        return pos

    def _table_vector(self, tables):
        self._pad(4)
        pos = len(self.buf)
        self.buf += struct.pack("<I", len(tables))
        slots = []
        for _ in tables:
            slots.append(len(self.buf))
            self.buf += b"\0\0\0\0"
        for slot, fields in zip(slots, tables):
            at = self._table(fields)
            struct.pack_into("<I", self.buf, slot, at - slot)
        return pos

    def _table(self, fields):
        """`fields[i]` is None, (kind, scalar) or ("off", child)."""
        present = [(i, f) for i, f in enumerate(fields) if f is not None]
        present.sort(key=lambda item: -_SIZES[item[1][0]])
        layout, rel = {}, 4
        for i, (kind, _) in present:
            size = _SIZES[kind]
            rel = (rel + size - 1) // size * size
            layout[i] = rel
            rel += size
        table_size = (rel + 3) // 4 * 4
        self._pad(2)
        vtable = struct.pack("<HH", 4 + 2 * len(fields), table_size)
        vtable += b"".join(struct.pack("<H", layout.get(i, 0)) for i in range(len(fields)))
        vtable_pos = len(self.buf)
        self.buf += vtable
        self._pad(8)
        table_pos = len(self.buf)
        self.buf += bytes(table_size)
        struct.pack_into("<i", self.buf, table_pos, table_pos - vtable_pos)
        children = []
        for i, (kind, value) in present:
            at = table_pos + layout[i]
            if kind == "off":
                children.append((at, value))
            else:
                struct.pack_into(_FORMATS[kind], self.buf, at, value)
        for at, child in children:
            pos = self._child(child)
            struct.pack_into("<I", self.buf, at, pos - at)
        return table_pos

    def finish(self, root):
        pos = self._table(root)
        struct.pack_into("<I", self.buf, 0, pos)
        self._pad(8)
        return bytes(self.buf)


def _message(header_type, header, body_length):
    fb = _Flatbuffer()
    meta = fb.finish([("i16", _METADATA_V5), ("u8", header_type), ("off", ("table", header)), ("i64", body_length)])
    return b"\xff\xff\xff\xff" + struct.pack("<i", len(meta)) + meta


def _validity(valid):
    """(null count, bitmap bytes or b"")."""
    nulls = int(len(valid) - np.count_nonzero(valid))
    if nulls == 0:
        return 0, b""
    return nulls, np.packbits(valid, bitorder="little").tobytes()


def _column(series):
    """(type tag, type table fields, null count, [buffers])."""
    dtype = series.dtype
    n = len(series)
    if _api.is_bool_dtype(dtype) and not series.isna().any():
        bits = np.packbits(series.to_numpy(dtype=bool), bitorder="little").tobytes()
        return _TYPE_BOOL, [], 0, [b"", bits]
    if _api.is_datetime64_any_dtype(dtype):
        tz = getattr(dtype, "tz", None)
        unit = getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]
        values = np.asarray(series.array.asi8, dtype="<i8")
        nulls, bitmap = _validity(values != np.iinfo(np.int64).min)
        fields = [("i16", _UNITS[unit]), None if tz is None else ("off", ("str", str(tz)))]
        return _TYPE_TIMESTAMP, fields, nulls, [bitmap, values.tobytes()]
    if _api.is_integer_dtype(dtype) and not series.isna().any():
        return _TYPE_INT, [("i32", 64), ("bool", True)], 0, [b"", series.to_numpy(dtype="<i8").tobytes()]
    if _api.is_numeric_dtype(dtype) or _api.is_bool_dtype(dtype):
        return _TYPE_FLOAT, [("i16", 2)], 0, [b"", series.to_numpy(dtype="<f8", na_value=np.nan).tobytes()]
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    encoded = [v.encode("utf-8", "surrogatepass") if isinstance(v, str) else str(v).encode() for v in uniques.tolist()]
    lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1])) if len(encoded) else np.zeros(0, np.int64)
    pool = np.frombuffer(b"".join(encoded), dtype=np.uint8)
    valid = codes >= 0
    row_len = np.where(valid, lengths[np.maximum(codes, 0)] if len(encoded) else 0, 0)
    offsets = np.zeros(n + 1, dtype="<i4")
    np.cumsum(row_len, out=offsets[1:])
    total = int(offsets[-1])
    # Each row's bytes are pool[start : start + len]: one vectorized gather.
    row_start = np.where(valid, starts[np.maximum(codes, 0)] if len(encoded) else 0, 0)
    # np.intp is 32-bit in the wasm32 guest: repeat counts and indices must use it.
    gather = np.repeat((row_start - offsets[:-1]).astype(np.intp), row_len.astype(np.intp)) + np.arange(total, dtype=np.intp)
    data = pool[gather].tobytes() if total else b""
    nulls, bitmap = _validity(valid)
    return _TYPE_UTF8, [], nulls, [bitmap, offsets.tobytes(), data]


def encode(df):
    """The DataFrame as Arrow IPC stream bytes."""
    n = len(df)
    fields, nodes, buffers, body = [], [], [], bytearray()
    for name in df.columns:
        tag, type_fields, nulls, bufs = _column(df[name])
        fields.append([("off", ("str", str(name))), ("bool", True), ("u8", tag), ("off", ("table", type_fields)), None, ("off", ("tables", []))])
        nodes.append(struct.pack("<qq", n, nulls))
        for b in bufs:
            buffers.append(struct.pack("<qq", len(body), len(b)))
            body += b
            body += bytes((-len(body)) % 8)
    schema = _message(_HEADER_SCHEMA, [("i16", 0), ("off", ("tables", fields))], 0)
    batch_header = [
        ("i64", n),
        ("off", ("structs", (len(nodes), b"".join(nodes)))),
        ("off", ("structs", (len(buffers), b"".join(buffers)))),
    ]
    batch = _message(_HEADER_RECORD_BATCH, batch_header, len(body))
    return b"".join((schema, batch, bytes(body), b"\xff\xff\xff\xff\x00\x00\x00\x00"))
