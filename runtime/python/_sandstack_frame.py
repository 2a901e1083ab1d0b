"""Encodes a pandas DataFrame as sandstack's columnar result frame: a small JSON
description of each column plus its raw numpy buffers, which the host turns into an Arrow
RecordBatch without any per-row work (src/sandbox/result_frame.rs reads it). Text columns
travel dictionary-encoded (pandas.factorize), so per-value Python work is per distinct
value, not per row.

Column types: f64, i64, bool (u8), ts (i64 in `unit`, `tz` or null; NaT is i64 min),
dict_utf8 (i32 codes with -1 for missing, i32 offsets, UTF-8 bytes).
"""

import numpy as np
import pandas as pd

_api = pd.api.types


def _factorize(series):
    """(codes with -1 for missing, unique values in order of appearance)."""
    dtype = series.dtype
    if isinstance(dtype, pd.StringDtype) and dtype.storage == "python":
        # Every value is a str or the dtype's missing value, which is what pandas' string
        # hash table takes directly: about 3x faster than pd.factorize on 100k rows.
        try:
            from pandas._libs.hashtable import StringHashTable

            values = series.array._ndarray
            uniques, codes = StringHashTable(max(len(values) // 8, 16)).factorize(values)
            return codes, uniques.tolist()
        except (ImportError, AttributeError, TypeError, ValueError):
            pass  # pandas' internals moved: the general path below
    codes, uniques = pd.factorize(series, use_na_sentinel=True)
    return codes, uniques.tolist()


def _text_column(series):
    codes, uniques = _factorize(series)
    values = [v if isinstance(v, str) else str(v) for v in uniques]
    encoded = [v.encode("utf-8", "surrogatepass") for v in values]
    offsets = np.zeros(len(encoded) + 1, dtype="<i4")
    if encoded:
        lengths = np.fromiter((len(b) for b in encoded), dtype=np.int64, count=len(encoded))
        offsets[1:] = np.cumsum(lengths)
    return "dict_utf8", [np.ascontiguousarray(codes, dtype="<i4"), offsets, b"".join(encoded)], {}


def _column(series):
    dtype = series.dtype
    if _api.is_bool_dtype(dtype):
        if series.isna().any():
            return "f64", [series.to_numpy(dtype="<f8", na_value=np.nan)], {}
        return "bool", [series.to_numpy(dtype=np.uint8)], {}
    if _api.is_datetime64_any_dtype(dtype):
        tz = getattr(dtype, "tz", None)
        unit = getattr(dtype, "unit", None) or np.datetime_data(dtype)[0]
        values = np.asarray(series.array.asi8, dtype="<i8")
        return "ts", [values], {"unit": unit, "tz": None if tz is None else str(tz)}
    if _api.is_integer_dtype(dtype):
        if series.isna().any():
            return "f64", [series.to_numpy(dtype="<f8", na_value=np.nan)], {}
        return "i64", [series.to_numpy(dtype="<i8")], {}
    if _api.is_float_dtype(dtype):
        return "f64", [series.to_numpy(dtype="<f8", na_value=np.nan)], {}
    return _text_column(series)


def encode(df):
    """(columns description, body bytes) for a DataFrame."""
    columns = []
    parts = []
    offset = 0
    for name in df.columns:
        kind, buffers, extra = _column(df[name])
        spans = []
        for buf in buffers:
            raw = buf if isinstance(buf, bytes) else memoryview(np.ascontiguousarray(buf)).cast("B")
            n = len(raw)
            spans.append([offset, n])
            parts.append(raw)
            offset += n
        col = {"name": str(name), "type": kind, "buffers": spans}
        col.update(extra)
        columns.append(col)
    return {"rows": int(len(df)), "columns": columns}, b"".join(parts)
