"""Clear errors where a secret's placeholder cannot stand in for its value.

A secret the operator binds to hosts reaches the code as a placeholder
(SANDSTACK-SECRET-<NAME>-<hex>, in os.environ); the host puts the value in its place only
in requests to those hosts. Code that hashes or signs with it would silently compute over
the placeholder, so hmac and hashlib's constructors refuse it, saying why and what the
operator can do. (An update() on an existing hash object is not checked.)
"""

PREFIX = "SANDSTACK-SECRET-"


class SecretPlaceholderError(RuntimeError):
    pass


def _as_bytes(value):
    if isinstance(value, str):
        return value.encode("utf-8", "surrogatepass")
    if isinstance(value, (bytes, bytearray, memoryview)):
        return bytes(value)
    return b""


def _guarded(where, original, placeholders):
    def check(*args, **kwargs):
        for value in list(args) + list(kwargs.values()):
            data = _as_bytes(value)
            for p in placeholders:
                if p in data:
                    name = p.decode()[len(PREFIX):].rsplit("-", 1)[0]
                    raise SecretPlaceholderError(
                        f"{where} was given the placeholder of secret {name}: the sandbox never holds the value "
                        f"of a secret the policy binds to hosts (the host puts it into requests to those hosts "
                        f"only), so code cannot hash or sign with it. Send it as a header, query parameter or "
                        f"body field instead, or ask the operator to grant the value itself with "
                        f"`secrets: {{{name}: {{plain: true}}}}` in the policy"
                    )
        return original(*args, **kwargs)

    check.__name__ = getattr(original, "__name__", where)
    check.__doc__ = getattr(original, "__doc__", None)
    return check


def guard(placeholders):
    """Refuse the run's placeholders in hmac and hashlib's constructors."""
    if not placeholders:
        return
    import hashlib
    import hmac

    wanted = tuple(p.encode() for p in placeholders)
    for name in ("new", "digest"):
        setattr(hmac, name, _guarded(f"hmac.{name}", getattr(hmac, name), wanted))
    for name in ["new", *sorted(hashlib.algorithms_guaranteed)]:
        original = getattr(hashlib, name, None)
        if callable(original):
            setattr(hashlib, name, _guarded(f"hashlib.{name}", original, wanted))
