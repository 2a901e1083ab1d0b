"""A `requests`-compatible HTTP client for code in the sandstack sandbox.

The guest has no sockets: each request goes through the door to the host, which makes it
under the batch's HTTP policy and limits (allowed hosts, no private addresses, request
count, response size, timeout). The API is the part of `requests` that ingest functions
use: get/post/put/patch/delete/head/options/request, Session, params, data, json,
headers, timeout, auth, and Response with status_code, ok, text, content, json(),
headers, url, reason, encoding and raise_for_status().
"""

import json as _json
from collections.abc import Mapping, MutableMapping
from urllib.parse import urlencode, urlsplit, urlunsplit

import _sandstack_door as _door

from . import exceptions
from .auth import HTTPBasicAuth
from .exceptions import (
    ConnectionError,
    ConnectTimeout,
    HTTPError,
    InvalidURL,
    JSONDecodeError,
    MissingSchema,
    InvalidSchema,
    ReadTimeout,
    RequestException,
    Timeout,
    TooManyRedirects,
)

__version__ = "2.32.0+sandstack"

__all__ = [
    "request", "get", "post", "put", "patch", "delete", "head", "options", "Session",
    "session", "Response", "exceptions", "codes", "HTTPBasicAuth", "RequestException",
    "HTTPError", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout",
    "TooManyRedirects", "JSONDecodeError",
]


class CaseInsensitiveDict(MutableMapping):
    def __init__(self, data=None, **kwargs):
        self._store = {}
        self.update(data or {}, **kwargs)

    def __setitem__(self, key, value):
        self._store[key.lower()] = (key, value)

    def __getitem__(self, key):
        return self._store[key.lower()][1]

    def __delitem__(self, key):
        del self._store[key.lower()]

    def __iter__(self):
        return (k for k, _ in self._store.values())

    def __len__(self):
        return len(self._store)

    def copy(self):
        return CaseInsensitiveDict(self._store.values())

    def __repr__(self):
        return repr(dict(self.items()))


class _Codes:
    ok = 200
    created = 201
    accepted = 202
    no_content = 204
    moved_permanently = 301
    found = 302
    not_modified = 304
    bad_request = 400
    unauthorized = 401
    forbidden = 403
    not_found = 404
    too_many_requests = 429
    internal_server_error = 500
    bad_gateway = 502
    service_unavailable = 503


codes = _Codes()


class PreparedRequest:
    def __init__(self, method, url, headers, body):
        self.method = method
        self.url = url
        self.headers = headers
        self.body = body


class Response:
    def __init__(self):
        self.status_code = None
        self.reason = ""
        self.headers = CaseInsensitiveDict()
        self.url = None
        self._content = b""
        self.encoding = None
        self.request = None
        self.history = []
        self.elapsed = None

    def __repr__(self):
        return f"<Response [{self.status_code}]>"

    def __bool__(self):
        return self.ok

    @property
    def ok(self):
        try:
            self.raise_for_status()
        except HTTPError:
            return False
        return True

    @property
    def content(self):
        return self._content

    @property
    def apparent_encoding(self):
        return "utf-8"

    @property
    def text(self):
        encoding = self.encoding or self._charset() or "utf-8"
        try:
            return self._content.decode(encoding, errors="replace")
        except LookupError:
            return self._content.decode("utf-8", errors="replace")

    def _charset(self):
        ctype = self.headers.get("content-type", "")
        for part in ctype.split(";")[1:]:
            key, _, value = part.strip().partition("=")
            if key.lower() == "charset" and value:
                return value.strip("\"'")
        return None

    def json(self, **kwargs):
        try:
            return _json.loads(self.text, **kwargs)
        except ValueError as e:
            raise JSONDecodeError(str(e), response=self) from e

    def iter_content(self, chunk_size=1, decode_unicode=False):
        data = self.text if decode_unicode else self._content
        step = chunk_size or len(data) or 1
        for i in range(0, len(data), step):
            yield data[i : i + step]

    def iter_lines(self, chunk_size=512, decode_unicode=False, delimiter=None):
        data = self.text if decode_unicode else self._content
        yield from (data.split(delimiter) if delimiter else data.splitlines())

    @property
    def links(self):
        return {}

    def close(self):
        pass

    def raise_for_status(self):
        if self.status_code is None:
            return
        kind = None
        if 400 <= self.status_code < 500:
            kind = "Client Error"
        elif 500 <= self.status_code < 600:
            kind = "Server Error"
        if kind:
            raise HTTPError(f"{self.status_code} {kind}: {self.reason} for url: {self.url}", response=self)


def _merge_params(url, params):
    if not params:
        return url
    if isinstance(params, (str, bytes)):
        query = params.decode() if isinstance(params, bytes) else params
    else:
        items = params.items() if isinstance(params, Mapping) else params
        pairs = []
        for k, v in items:
            if v is None:
                continue
            if isinstance(v, (list, tuple)):
                pairs.extend((k, x) for x in v)
            else:
                pairs.append((k, v))
        query = urlencode(pairs)
    scheme, netloc, path, old, frag = urlsplit(url)
    return urlunsplit((scheme, netloc, path, f"{old}&{query}" if old else query, frag))


def _check_url(url):
    if not isinstance(url, str):
        url = url.decode() if isinstance(url, bytes) else str(url)
    url = url.strip()
    parts = urlsplit(url)
    if not parts.scheme:
        raise MissingSchema(f"Invalid URL {url!r}: No scheme supplied. Perhaps you meant https://{url}?")
    if parts.scheme.lower() not in ("http", "https"):
        raise InvalidSchema(f"No connection adapters were found for {url!r}")
    if not parts.netloc:
        raise InvalidURL(f"Invalid URL {url!r}: No host supplied")
    return url


def _timeout_seconds(timeout):
    if timeout is None:
        return None
    if isinstance(timeout, (tuple, list)):
        parts = [t for t in timeout if t is not None]
        return float(sum(parts)) if parts else None
    return float(timeout)


def _encode_body(data, json, headers):
    if json is not None and not data:
        headers.setdefault("Content-Type", "application/json")
        return _json.dumps(json).encode("utf-8")
    if data is None:
        return b""
    if isinstance(data, bytes):
        return data
    if isinstance(data, str):
        return data.encode("utf-8")
    if hasattr(data, "read"):
        return _encode_body(data.read(), None, headers)
    items = data.items() if isinstance(data, Mapping) else data
    headers.setdefault("Content-Type", "application/x-www-form-urlencoded")
    return urlencode(list(items), doseq=True).encode("utf-8")


def _send(method, url, params=None, data=None, headers=None, json=None, timeout=None,
          auth=None, allow_redirects=True, base_headers=None, cookies=None, **_ignored):
    method = str(method).upper()
    url = _merge_params(_check_url(url), params)
    merged = CaseInsensitiveDict(base_headers or {})
    for k, v in (headers or {}).items():
        if v is None:
            merged.pop(k, None)
        else:
            merged[k] = v
    merged.setdefault("User-Agent", "python-requests/2.32 (sandstack)")
    merged.setdefault("Accept", "*/*")
    if cookies:
        merged["Cookie"] = "; ".join(f"{k}={v}" for k, v in dict(cookies).items())
    body = _encode_body(data, json, merged)
    prepared = PreparedRequest(method, url, merged, body)
    if auth is not None:
        if isinstance(auth, (tuple, list)) and len(auth) == 2:
            auth = HTTPBasicAuth(*auth)
        prepared = auth(prepared) or prepared
    header = {
        "method": method,
        "url": url,
        "headers": [[str(k), str(v)] for k, v in prepared.headers.items()],
        "timeout": _timeout_seconds(timeout),
        "follow_redirects": bool(allow_redirects),
    }
    try:
        reply, content = _door.call("http", header, prepared.body or b"")
    except _door.DoorError as e:
        kind = e.kind
        if kind == "connect_timeout":
            raise ConnectTimeout(str(e), request=prepared) from None
        if kind == "timeout":
            raise ReadTimeout(str(e), request=prepared) from None
        if kind == "too_many_redirects":
            raise TooManyRedirects(str(e), request=prepared) from None
        if kind == "invalid_url":
            raise InvalidURL(str(e), request=prepared) from None
        raise ConnectionError(str(e), request=prepared) from None
    r = Response()
    r.status_code = reply["status"]
    r.reason = reply.get("reason", "")
    r.url = reply.get("url", url)
    r.headers = CaseInsensitiveDict(reply.get("headers", []))
    r._content = bytes(content)
    r.request = prepared
    return r


class Session:
    def __init__(self):
        self.headers = CaseInsensitiveDict()
        self.params = {}
        self.auth = None
        self.cookies = {}
        self.verify = True
        self.proxies = {}

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def mount(self, prefix, adapter):
        pass

    def request(self, method, url, params=None, **kwargs):
        merged = dict(self.params)
        if isinstance(params, Mapping):
            merged.update(params)
        elif params:
            return _send(method, url, params=params, base_headers=self.headers,
                         auth=kwargs.pop("auth", None) or self.auth, **kwargs)
        return _send(method, url, params=merged, base_headers=self.headers,
                     auth=kwargs.pop("auth", None) or self.auth, **kwargs)

    def get(self, url, **kwargs):
        return self.request("GET", url, **kwargs)

    def options(self, url, **kwargs):
        return self.request("OPTIONS", url, **kwargs)

    def head(self, url, **kwargs):
        kwargs.setdefault("allow_redirects", False)
        return self.request("HEAD", url, **kwargs)

    def post(self, url, data=None, json=None, **kwargs):
        return self.request("POST", url, data=data, json=json, **kwargs)

    def put(self, url, data=None, **kwargs):
        return self.request("PUT", url, data=data, **kwargs)

    def patch(self, url, data=None, **kwargs):
        return self.request("PATCH", url, data=data, **kwargs)

    def delete(self, url, **kwargs):
        return self.request("DELETE", url, **kwargs)


def session():
    return Session()


def request(method, url, **kwargs):
    return _send(method, url, **kwargs)


def get(url, params=None, **kwargs):
    return _send("GET", url, params=params, **kwargs)


def options(url, **kwargs):
    return _send("OPTIONS", url, **kwargs)


def head(url, **kwargs):
    kwargs.setdefault("allow_redirects", False)
    return _send("HEAD", url, **kwargs)


def post(url, data=None, json=None, **kwargs):
    return _send("POST", url, data=data, json=json, **kwargs)


def put(url, data=None, **kwargs):
    return _send("PUT", url, data=data, **kwargs)


def patch(url, data=None, **kwargs):
    return _send("PATCH", url, data=data, **kwargs)


def delete(url, **kwargs):
    return _send("DELETE", url, **kwargs)
