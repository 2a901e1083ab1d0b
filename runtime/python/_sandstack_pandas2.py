"""Code written for pandas 2 keeps working on the guest's pandas 3.

pandas 3 removed what pandas 2 had deprecated, and ingest code written against pandas 2
hits it: frequency aliases (`floor("S")`, `resample("M")`, `freq="H"`), `fillna(method=)`,
`applymap`, `to_datetime(infer_datetime_format=)`, `read_csv(delim_whitespace=)` and a few
more. Each is accepted again with its pandas-2 meaning, and the run log says once per run
what was used and how pandas 3 spells it. What cannot be brought back (copy-on-write,
the string dtype) is listed in the README. Installed once, at snapshot time.
"""

import linecache
import sys

import _sandstack_door as _door

_warned = set()


def _warn(old, new):
    """Once per run (module state starts fresh from the snapshot each run)."""
    if old in _warned:
        return
    _warned.add(old)
    _door.log("warning", f"pandas 3 removed {old}; sandstack reads it as pandas 2 did. "
                         f"Write {new} to silence this warning.")


# Aliases removed in pandas 3 that mean the same for offsets and periods.
_RENAMED = {"S": "s", "T": "min", "H": "h", "BH": "bh", "CBH": "cbh", "L": "ms", "U": "us", "N": "ns"}
# Aliases pandas 3 renamed for offsets only ("M" is still a period frequency).
_OFFSET_RENAMED = {"M": "ME", "BM": "BME", "SM": "SME", "CBM": "CBME", "Q": "QE", "BQ": "BQE",
                   "A": "YE", "Y": "YE", "BA": "BYE", "BY": "BYE", "AS": "YS", "BAS": "BYS"}
_MONTHS = ["JAN", "FEB", "MAR", "APR", "MAY", "JUN", "JUL", "AUG", "SEP", "OCT", "NOV", "DEC"]
# A private spelling of a pandas-2 offset alias that resolves to the pandas-3 offset
# through pandas' own alias table, so it works for offsets and periods alike.
_PRIVATE = "SANDSTACKPANDAS2"


def _in_period_code():
    """Whether the nearest Python frames are pandas' period code, or a line that builds
    a Period: there `M`, `Q` and `Y` are still valid and must pass untouched."""
    frame = sys._getframe(2)
    for _ in range(4):
        if frame is None:
            return False
        name = frame.f_code.co_filename
        if "period" in name.rsplit("/", 1)[-1]:
            return True
        if "pandas" not in name:
            line = linecache.getline(name, frame.f_lineno)
            return "Period" in line or "period" in line
        frame = frame.f_back
    return False


class _Splitter:
    """Stands in for pandas' frequency-string pattern and rewrites removed aliases in
    what its `split` returns, the one place every frequency string passes through."""

    def __init__(self, pattern):
        self._pattern = pattern

    def __getattr__(self, name):
        return getattr(self._pattern, name)

    def split(self, text):
        parts = self._pattern.split(text)
        period = None
        for i in range(2, len(parts), 4):
            name = parts[i]
            if not name:
                continue
            base, sep, anchor = name.partition("-")
            if base in _RENAMED:
                parts[i] = _RENAMED[base] + sep + anchor
                _warn(f"the frequency alias '{name}'", f"'{parts[i]}'")
            elif base in _OFFSET_RENAMED:
                if period is None:
                    period = _in_period_code()
                if period:
                    continue
                parts[i] = _PRIVATE + base + sep + anchor
                _warn(f"the frequency alias '{name}'", f"'{_OFFSET_RENAMED[base]}{sep}{anchor}'")
        return parts


def _install_frequency_aliases():
    from pandas._libs.tslibs import offsets

    aliases = dict(offsets._lite_rule_alias)
    for old, new in _OFFSET_RENAMED.items():
        aliases[_PRIVATE + old] = new
        for month in _MONTHS:
            aliases[f"{_PRIVATE}{old}-{month}"] = f"{new}-{month}"
    offsets._lite_rule_alias = aliases
    offsets.opattern = _Splitter(offsets.opattern)


def _install_methods():
    import pandas as pd
    from pandas.core.generic import NDFrame

    fillna = NDFrame.fillna

    def fillna_with_method(self, value=None, *args, method=None, **kwargs):
        if method is None:
            return fillna(self, value, *args, **kwargs)
        fill = {"ffill": "ffill", "pad": "ffill", "bfill": "bfill", "backfill": "bfill"}.get(method)
        if fill is None:
            raise ValueError(f"Invalid fill method. Expecting pad (ffill) or backfill (bfill). Got {method}")
        _warn(f"fillna(method={method!r})", f".{fill}()")
        kwargs.pop("downcast", None)
        return getattr(self, fill)(**{k: v for k, v in kwargs.items() if k in ("axis", "inplace", "limit")})

    NDFrame.fillna = fillna_with_method

    def pad(self, *args, **kwargs):
        _warn(".pad()", ".ffill()")
        return self.ffill(*args, **kwargs)

    def backfill(self, *args, **kwargs):
        _warn(".backfill()", ".bfill()")
        return self.bfill(*args, **kwargs)

    NDFrame.pad = pad
    NDFrame.backfill = backfill

    def applymap(self, func, na_action=None, **kwargs):
        _warn("DataFrame.applymap()", "DataFrame.map()")
        return self.map(func, na_action=na_action, **kwargs)

    pd.DataFrame.applymap = applymap

    def ravel(self, order="C"):
        _warn("Series.ravel()", "Series.to_numpy().ravel()")
        return self.to_numpy().ravel(order=order)

    pd.Series.ravel = ravel

    def as_bool(self):
        _warn(".bool()", "bool(x.item())")
        return bool(self.squeeze() if isinstance(self, pd.DataFrame) else self.item())

    NDFrame.bool = as_bool

    def value_counts(values, sort=True, ascending=False, normalize=False, bins=None, dropna=True):
        _warn("pd.value_counts()", "pd.Series(values).value_counts()")
        return pd.Series(values).value_counts(sort=sort, ascending=ascending, normalize=normalize,
                                              bins=bins, dropna=dropna)

    pd.value_counts = value_counts

    to_datetime = pd.to_datetime

    def to_datetime_compat(*args, **kwargs):
        if "infer_datetime_format" in kwargs:
            kwargs.pop("infer_datetime_format")
            _warn("to_datetime(infer_datetime_format=...)", "to_datetime() without it (it always infers)")
        return to_datetime(*args, **kwargs)

    to_datetime_compat.__doc__ = to_datetime.__doc__
    pd.to_datetime = to_datetime_compat

    read_csv = pd.read_csv

    def read_csv_compat(*args, **kwargs):
        if kwargs.pop("delim_whitespace", False):
            kwargs["sep"] = r"\s+"
            _warn("read_csv(delim_whitespace=True)", "read_csv(sep=r'\\s+')")
        return read_csv(*args, **kwargs)

    read_csv_compat.__doc__ = read_csv.__doc__
    pd.read_csv = read_csv_compat


# Removed in pandas 3 with no safe stand-in: the error gets a hint.
HINTS = {
    "swapaxes": "pandas 3 removed swapaxes(); use .T (transpose)",
    "'Series' object has no attribute 'view'": "pandas 3 removed Series.view(); use .astype() or .to_numpy().view()",
    "object has no attribute 'first'": "pandas 3 removed .first(offset); use df.loc[:df.index[0] + pd.Timedelta(...)]",
    "object has no attribute 'last'": "pandas 3 removed .last(offset); use df.loc[df.index[-1] - pd.Timedelta(...):]",
    "groupby() got an unexpected keyword argument 'axis'": "pandas 3 removed groupby(axis=1); group df.T instead",
    "object has no attribute 'append'": "pandas 2 already removed .append(); use pd.concat([a, b])",
    "object has no attribute 'iteritems'": "pandas 2 already removed .iteritems(); use .items()",
}


def hint(exc):
    """A pandas-3 hint for `exc`, or None."""
    text = str(exc)
    for needle, advice in HINTS.items():
        if needle in text:
            return advice + " (the sandbox has pandas 3)"
    return None


def install():
    _install_frequency_aliases()
    _install_methods()
