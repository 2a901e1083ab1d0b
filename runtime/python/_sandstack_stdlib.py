"""The standard library archive, held in the snapshot's memory.

Installed first when sandstack builds its snapshot, while the archive is still a file: it is
read into memory once, and from then on every read of it (zipimport for new imports,
importlib.resources and importlib.metadata through zipfile, tracebacks) is served from that
copy. Runs therefore get no filesystem at all, and the archive is mapped with the rest of the
compiled guest, from the cache or from a bundle, never read from the host's disk.

Only the exact path of the archive is answered here; every other path goes to WASI as before,
where nothing is preopened at run time.
"""

import _io
import builtins
import io
import os
import posix
import stat as _stat_mod
import sys

_archive = None
_data = b""


def _is_archive(path):
    if isinstance(path, int) or _archive is None:
        return False
    try:
        return os.fsdecode(path) == _archive
    except TypeError:
        return False


def _reader(mode):
    if any(c in mode for c in "wax+"):
        raise PermissionError(30, "Read-only file system", _archive)
    data = io.BytesIO(_data)
    return data if "b" in mode else io.TextIOWrapper(data)


_real_open_code = _io.open_code
_real_open = _io.open
_real_stat = posix.stat


def _open_code(path):
    if _is_archive(path):
        return _reader("rb")
    return _real_open_code(path)


def _open(file, mode="r", *args, **kwargs):
    if _is_archive(file):
        return _reader(mode)
    return _real_open(file, mode, *args, **kwargs)


def _stat(path, *args, **kwargs):
    if _is_archive(path) and not args and not kwargs.get("dir_fd"):
        return os.stat_result((_stat_mod.S_IFREG | 0o444, 0, 0, 1, 0, 0, len(_data), 0, 0, 0))
    return _real_stat(path, *args, **kwargs)


def install():
    """Read the archive on sys.path into memory and serve its path from there."""
    global _archive, _data
    archive = next((p for p in sys.path if p.endswith(".zip")), None)
    if archive is None:
        raise RuntimeError("no standard library archive on sys.path: %r" % (sys.path,))
    with _real_open_code(archive) as f:
        _data = f.read()
    _archive = archive
    # zipimport calls _io.open_code and importlib's _path_stat (posix.stat) at call time;
    # zipfile calls io.open; user code calls open and os.stat.
    _io.open_code = _open_code
    io.open_code = _open_code
    io.open = _open
    builtins.open = _open
    posix.stat = _stat
    os.stat = _stat
