"""`requests.cookies`: a cookie jar that is also a mapping of names to values.

Cookies come from the `Set-Cookie` headers of responses (`Response.cookies`), are kept
by a `Session` across requests, and are sent back to the hosts and paths they belong
to. A plain dict passed as `cookies=` is sent to any host, as in requests.
"""

import time
from collections.abc import MutableMapping
from http.cookies import SimpleCookie, CookieError
from urllib.parse import urlsplit


class Cookie:
    """One cookie: the attributes of `http.cookiejar.Cookie` that code reads."""

    def __init__(self, name, value, domain="", path="/", secure=False, expires=None,
                 domain_specified=False, rest=None):
        self.name = name
        self.value = value
        self.domain = domain
        self.path = path or "/"
        self.secure = secure
        self.expires = expires
        self.domain_specified = domain_specified
        self.rest = rest or {}

    def is_expired(self, now=None):
        return self.expires is not None and self.expires <= (now if now is not None else time.time())

    def matches(self, url):
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        domain = self.domain.lower().lstrip(".")
        if domain:
            if self.domain_specified:
                if host != domain and not host.endswith("." + domain):
                    return False
            elif host != domain:
                return False
        if self.secure and parts.scheme != "https":
            return False
        path = parts.path or "/"
        return path == self.path or path.startswith(self.path.rstrip("/") + "/") or self.path == "/"

    def __repr__(self):
        return f"<Cookie {self.name}={self.value} for {self.domain}{self.path}>"


class CookieConflictError(RuntimeError):
    pass


class RequestsCookieJar(MutableMapping):
    def __init__(self):
        self._cookies = {}  # (domain, path, name) -> Cookie

    # The mapping of names to values.
    def _find(self, name, domain=None, path=None):
        found = [c for (d, p, n), c in self._cookies.items()
                 if n == name and (domain is None or d == domain) and (path is None or p == path)]
        if len(found) > 1:
            raise CookieConflictError(f"there are multiple cookies with name {name!r}")
        return found[0] if found else None

    def get(self, name, default=None, domain=None, path=None):
        c = self._find(name, domain, path)
        return default if c is None else c.value

    def __getitem__(self, name):
        c = self._find(name)
        if c is None:
            raise KeyError(name)
        return c.value

    def __setitem__(self, name, value):
        self.set(name, value)

    def __delitem__(self, name):
        keys = [k for k in self._cookies if k[2] == name]
        if not keys:
            raise KeyError(name)
        for k in keys:
            del self._cookies[k]

    def __iter__(self):
        # Iterating a requests jar yields its Cookie objects, as CookieJar does.
        return iter(list(self._cookies.values()))

    def __len__(self):
        return len(self._cookies)

    def __contains__(self, name):
        if isinstance(name, Cookie):
            return name in self._cookies.values()
        return any(k[2] == name for k in self._cookies)

    def keys(self):
        return [c.name for c in self._cookies.values()]

    def values(self):
        return [c.value for c in self._cookies.values()]

    def items(self):
        return [(c.name, c.value) for c in self._cookies.values()]

    def list_domains(self):
        return sorted({c.domain for c in self._cookies.values()})

    def list_paths(self):
        return sorted({c.path for c in self._cookies.values()})

    def get_dict(self, domain=None, path=None):
        return {c.name: c.value for c in self._cookies.values()
                if (domain is None or c.domain == domain) and (path is None or c.path == path)}

    def set(self, name, value, domain="", path="/", **kwargs):
        if value is None:
            for k in [k for k in self._cookies if k[2] == name and (not domain or k[0] == domain)]:
                del self._cookies[k]
            return None
        c = Cookie(name, str(value), domain=domain, path=path, secure=kwargs.get("secure", False),
                   expires=kwargs.get("expires"), domain_specified=bool(domain))
        self.set_cookie(c)
        return c

    def set_cookie(self, cookie):
        key = (cookie.domain, cookie.path, cookie.name)
        if cookie.is_expired():
            self._cookies.pop(key, None)
        else:
            self._cookies[key] = cookie

    def update(self, other=(), **kwargs):
        if isinstance(other, RequestsCookieJar):
            for c in other:
                self.set_cookie(c)
        else:
            for k, v in dict(other, **kwargs).items():
                self.set(k, v)

    def clear(self, domain=None, path=None, name=None):
        for k in list(self._cookies):
            if (domain is None or k[0] == domain) and (path is None or k[1] == path) and (name is None or k[2] == name):
                del self._cookies[k]

    def copy(self):
        jar = RequestsCookieJar()
        jar.update(self)
        return jar

    def header_for(self, url):
        """The Cookie header value for a request to `url`, or None."""
        now = time.time()
        pairs = [f"{c.name}={c.value}" for c in self._cookies.values()
                 if not c.is_expired(now) and c.matches(url)]
        return "; ".join(pairs) or None

    def __repr__(self):
        return f"<RequestsCookieJar[{', '.join(repr(c) for c in self._cookies.values())}]>"


def cookiejar_from_dict(cookie_dict, cookiejar=None, overwrite=True):
    jar = RequestsCookieJar() if cookiejar is None else cookiejar
    for name, value in (cookie_dict or {}).items():
        if overwrite or name not in jar:
            jar.set(name, value)
    return jar


def merge_cookies(cookiejar, cookies):
    if isinstance(cookies, dict):
        return cookiejar_from_dict(cookies, cookiejar, overwrite=False)
    if cookies is not None:
        cookiejar.update(cookies)
    return cookiejar


def _expiry(morsel):
    if morsel["max-age"]:
        try:
            return time.time() + int(morsel["max-age"])
        except ValueError:
            return None
    if morsel["expires"]:
        from email.utils import parsedate_to_datetime

        try:
            return parsedate_to_datetime(morsel["expires"]).timestamp()
        except (TypeError, ValueError):
            return None
    return None


def extract_cookies(header_pairs, url):
    """A jar of the cookies the `Set-Cookie` headers among `header_pairs` set."""
    jar = RequestsCookieJar()
    host = (urlsplit(url).hostname or "").lower()
    for key, value in header_pairs:
        if key.lower() != "set-cookie":
            continue
        parsed = SimpleCookie()
        try:
            parsed.load(value)
        except CookieError:
            continue
        for name, morsel in parsed.items():
            domain = morsel["domain"]
            jar.set_cookie(Cookie(
                name, morsel.value,
                domain=domain or host,
                path=morsel["path"] or "/",
                secure=bool(morsel["secure"]),
                expires=_expiry(morsel),
                domain_specified=bool(domain),
            ))
    return jar
