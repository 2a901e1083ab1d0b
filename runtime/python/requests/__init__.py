"""A `requests`-compatible HTTP client for code in the sandstack sandbox.

The guest has no sockets: each request goes through the door to the host, which makes it
under the batch's HTTP policy and limits (allowed hosts, no private addresses, request
count, response size, timeout). The API is the part of `requests` that ingest functions
use: get/post/put/patch/delete/head/options/request, Session, params, data, json,
headers, timeout, auth, cookies (a jar per Session, `Response.cookies`), adapters with
`max_retries` (`urllib3.util.Retry`), and Response with status_code, ok, text, content,
json(), headers, cookies, url, reason, encoding and raise_for_status().
"""

import json as _json
import time as _time
from collections.abc import Mapping
from email.utils import parsedate_to_datetime as _parsedate
from urllib.parse import urlencode, urlsplit, urlunsplit

import _sandstack_door as _door

from . import adapters, cookies, exceptions, structures, utils
from .adapters import HTTPAdapter
from .auth import HTTPBasicAuth
from .cookies import RequestsCookieJar, cookiejar_from_dict, extract_cookies
from .structures import CaseInsensitiveDict
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
    RetryError,
    Timeout,
    TooManyRedirects,
)

__version__ = "2.32.0+sandstack"

__all__ = [
    "request", "get", "post", "put", "patch", "delete", "head", "options", "Session",
    "session", "Response", "exceptions", "codes", "HTTPBasicAuth", "RequestException",
    "HTTPError", "ConnectionError", "Timeout", "ReadTimeout", "ConnectTimeout",
    "TooManyRedirects", "JSONDecodeError", "RetryError", "HTTPAdapter", "adapters", "cookies",
    "structures", "utils",
]


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
        self.cookies = RequestsCookieJar()

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
        encoding = self.encoding or utils.charset_of(self.headers.get("content-type")) or "utf-8"
        try:
            return self._content.decode(encoding, errors="replace")
        except LookupError:
            return self._content.decode("utf-8", errors="replace")

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


def _cookie_header(url, cookies):
    """The Cookie header for `url`: a jar's cookies that belong to it, or every pair of
    a plain mapping."""
    if isinstance(cookies, RequestsCookieJar):
        return cookies.header_for(url)
    if cookies:
        return "; ".join(f"{k}={v}" for k, v in dict(cookies).items()) or None
    return None


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
    merged.setdefault("User-Agent", utils.default_user_agent())
    merged.setdefault("Accept", "*/*")
    cookie = _cookie_header(url, cookies)
    if cookie:
        merged["Cookie"] = f"{merged['Cookie']}; {cookie}" if "Cookie" in merged else cookie
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
    pairs = reply.get("headers", [])
    r.headers = CaseInsensitiveDict(pairs)
    r.cookies = extract_cookies(pairs, r.url)
    r._content = bytes(content)
    r.request = prepared
    return r


def _retry_after(response):
    value = response.headers.get("Retry-After")
    if value is None:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, _parsedate(value).timestamp() - _time.time())
    except (TypeError, ValueError):
        return None


def _send_retrying(retry, method, url, **kwargs):
    """`_send`, retried as urllib3 would under `retry` (a `urllib3.util.Retry`)."""
    used = {"connect": 0, "read": 0, "status": 0}
    method = str(method).upper()

    def exhausted(kind):
        if retry.total is not None and retry.total is not False and sum(used.values()) >= retry.total:
            return True
        return used[kind] >= retry.attempts(kind)

    while True:
        try:
            r = _send(method, url, **kwargs)
        except (ConnectionError, Timeout) as e:
            kind = "read" if isinstance(e, ReadTimeout) else "connect"
            if exhausted(kind) or (kind == "read" and method not in (retry.allowed_methods or [method])):
                raise
            used[kind] += 1
            _time.sleep(retry.get_backoff_time(sum(used.values())))
            continue
        wait = _retry_after(r) if retry.respect_retry_after_header else None
        if not retry.is_retry(method, r.status_code, wait is not None):
            return r
        if exhausted("status"):
            if retry.raise_on_status:
                raise RetryError(
                    f"Max retries exceeded with url: {r.url} (too many {r.status_code} error responses)",
                    response=r, request=r.request)
            return r
        used["status"] += 1
        _time.sleep(min(retry.backoff_max, wait) if wait is not None else retry.get_backoff_time(sum(used.values())))


class Session:
    def __init__(self):
        self.headers = CaseInsensitiveDict()
        self.params = {}
        self.auth = None
        self.cookies = RequestsCookieJar()
        self.verify = True
        self.proxies = {}
        self.adapters = {}
        self.mount("https://", HTTPAdapter())
        self.mount("http://", HTTPAdapter())

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()

    def close(self):
        pass

    def mount(self, prefix, adapter):
        self.adapters[prefix] = adapter
        # Longest prefix first, as requests keeps them.
        self.adapters = dict(sorted(self.adapters.items(), key=lambda kv: -len(kv[0])))

    def get_adapter(self, url):
        for prefix, adapter in self.adapters.items():
            if url.lower().startswith(prefix.lower()):
                return adapter
        raise InvalidSchema(f"No connection adapters were found for {url!r}")

    def request(self, method, url, params=None, cookies=None, **kwargs):
        if isinstance(params, Mapping) or not params:
            merged = dict(self.params)
            merged.update(params or {})
            params = merged
        jar = self.cookies.copy()
        if cookies is not None:
            jar.update(cookies if isinstance(cookies, RequestsCookieJar) else cookiejar_from_dict(cookies))
        retry = getattr(self.get_adapter(str(url)), "max_retries", None)
        kwargs["auth"] = kwargs.pop("auth", None) or self.auth
        send = (lambda **kw: _send_retrying(retry, method, url, **kw)) if retry else (
            lambda **kw: _send(method, url, **kw))
        r = send(params=params, base_headers=self.headers, cookies=jar, **kwargs)
        self.cookies.update(r.cookies)
        return r

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
