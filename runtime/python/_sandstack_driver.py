"""Runs one ingest in a fresh instance of sandstack's snapshot.

The host runs `import _sandstack_driver; _sandstack_driver.main()` as the instance's only
turn. The driver asks the host for the run's inputs (the user's code, the function to call,
its arguments, the allowed environment), since the snapshot froze `os.environ`; reseeds
the random generators, which the snapshot froze too, from the host's random source; runs
the function; and sends back its DataFrame as a columnar frame, or the user's exception
with a traceback of the user's own frames.
"""

import os
import sys
import traceback

import _sandstack_door as door
import _sandstack_frame as frame


def _reseed():
    import random

    import numpy as np

    seed = int.from_bytes(os.urandom(16), "little")
    random.seed(seed)
    np.random.seed(seed % (2**32))


def _user_traceback(exc, filename):
    """The traceback from the user's code down, without the driver's frames (all of them
    for a syntax error, which has no user frame: Python then shows the file and line)."""
    te = traceback.TracebackException.from_exception(exc)
    stack = te.stack
    keep = []
    for i, fs in enumerate(stack):
        if fs.filename == filename:
            keep = stack[i:]
            break
    if not keep and not isinstance(exc, SyntaxError):
        return ""  # nothing of the user's to show beyond the message
    te.stack = traceback.StackSummary.from_list(keep)
    return "".join(te.format())


def _send_error(exc, filename, kind="exception"):
    message = str(exc)
    if isinstance(exc, (AttributeError, TypeError)):
        import _sandstack_pandas2

        hint = _sandstack_pandas2.hint(exc)
        if hint:
            message = f"{message} ({hint})"
    door.call(
        "error",
        {
            "kind": kind,
            "type": type(exc).__name__,
            "message": message,
            "traceback": _user_traceback(exc, filename),
        },
    )


def _code(start, body, filename, source):
    """The user's code object: the one the host kept from an earlier run of this very
    source when it sent it, else compiled here and handed to the host for later runs."""
    import marshal

    if start.get("code") == "marshal":
        try:
            return marshal.loads(body)
        except (EOFError, ValueError, TypeError):
            pass
    code = compile(source, filename, "exec")
    try:
        compiled = marshal.dumps(code)
        # Always sent, empty when too big to keep: the host takes only the first.
        door.call("compiled", None, compiled if len(compiled) <= start.get("code_room", 0) else b"")
    except (door.DoorError, ValueError):
        pass  # kept or not, this run goes on
    return code


def main():
    start, body = door.call("start")
    filename = start["filename"]
    source = start["source"]
    function = start["function"]
    os.environ.clear()
    os.environ.update(start.get("env", {}))
    os.environ.setdefault("TMPDIR", "/tmp")
    if start.get("secrets"):
        import _sandstack_secrets

        _sandstack_secrets.guard(start["secrets"])
    _reseed()

    import linecache

    linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
    namespace = {"__name__": "__sandstack_ingest__", "__file__": filename, "__builtins__": __builtins__}
    try:
        code = _code(start, body, filename, source)
    except SyntaxError as e:
        _send_error(e, filename, "syntax")
        return
    try:
        exec(code, namespace)
        fn = namespace.get(function)
        if fn is None or not callable(fn):
            defined = sorted(k for k, v in namespace.items() if callable(v) and not k.startswith("_"))
            raise NameError(
                f"the ingest code defines no function `{function}()`"
                + (f" (it defines: {', '.join(defined)})" if defined else "")
            )
        if start.get("mode") == "preprocess":
            import numpy as np
            import pandas as pd

            series = start["series"]
            values = [np.nan if v is None else v for v in series["values"]]
            df = pd.DataFrame(
                {
                    "metric_timestamp": pd.to_datetime(np.asarray(series["timestamps_us"], dtype="int64"), unit="us"),
                    "metric_value": np.asarray(values, dtype="float64"),
                }
            )
            result = fn(df, **start.get("kwargs", {}))
            if isinstance(result, pd.DataFrame):
                # Features are indexed by time; send the index as a column.
                result = result.reset_index()
        else:
            result = fn(**start.get("kwargs", {}))
    except BaseException as e:  # noqa: BLE001 - everything the user raises goes back
        if isinstance(e, SystemExit):
            e = RuntimeError(f"the ingest code called exit({e.code!r})")
        _send_error(e, filename)
        return
    if start.get("phases"):
        door.call("returned")

    import pandas as pd

    if not isinstance(result, pd.DataFrame):
        door.call(
            "error",
            {
                "kind": "result_type",
                "type": "TypeError",
                "message": f"{function}() returned {type(result).__name__}, expected a pandas DataFrame",
                "traceback": "",
            },
        )
        return
    if len(set(result.columns)) != len(result.columns):
        duplicated = [str(c) for c in result.columns[result.columns.duplicated()].unique()]
        door.call(
            "error",
            {
                "kind": "result_type",
                "type": "ValueError",
                "message": f"{function}() returned a DataFrame with duplicate column name(s) "
                + ", ".join(duplicated)
                + ": give each column one name (df.loc[:, ~df.columns.duplicated()] keeps the first)",
                "traceback": "",
            },
        )
        return
    try:
        columns, body = frame.encode(result)
    except BaseException as e:  # noqa: BLE001 - user objects' __str__ and friends run here
        if isinstance(e, SystemExit):
            e = RuntimeError(f"the ingest code called exit({e.code!r})")
        door.call(
            "error",
            {
                "kind": "result",
                "type": type(e).__name__,
                "message": f"cannot convert the DataFrame {function}() returned: {type(e).__name__}: {e}",
                "traceback": _user_traceback(e, filename),
            },
        )
        return
    door.call("result", {"format": "sscf1", "rows": columns["rows"], "columns": columns["columns"]}, body)


def warm(rounds=64):
    """Exercise the common paths many times at snapshot time. CPython's specializing
    interpreter rewrites hot bytecode after repeated runs, and that state lives in memory,
    so it lands in the snapshot: every run then starts with pandas' hot paths already
    specialized, instead of cold."""
    import datetime

    import numpy as np
    import pandas as pd

    for i in range(rounds):
        rng = np.random.default_rng()
        values = rng.normal(loc=10.0, scale=1.0, size=3)
        df = pd.DataFrame({"metric_name": [f"m{i}" for i in range(3)], "metric_value": values})
        df["metric_timestamp"] = pd.Timestamp.now(tz="UTC")
        df["metric_value"] = np.round(df["metric_value"], 2)
        frame.encode(df)
        rows = pd.DataFrame([["x", 1], ["y", 2.5]], columns=["metric_name", "metric_value"])
        rows["metric_timestamp"] = pd.Timestamp.utcnow() if hasattr(pd.Timestamp, "utcnow") else pd.Timestamp.now(tz="UTC")
        frame.encode(rows)
        mixed = pd.DataFrame({"metric_name": ["a", "b"], "metric_value": [1, 2]})
        mixed["metric_timestamp"] = [datetime.datetime.now(), "2026-01-01T00:00:00Z"]
        frame.encode(mixed)
        pd.to_datetime(["2026-01-01T00:00:00Z"], utc=True)
