"""`requests.utils`: the helpers ingest code reaches for."""

from urllib.parse import quote, unquote, urlparse, urlsplit, urlunsplit  # noqa: F401

from .cookies import RequestsCookieJar, cookiejar_from_dict  # noqa: F401
from .structures import CaseInsensitiveDict


def default_user_agent(name="python-requests"):
    return f"{name}/2.32 (sandstack)"


def default_headers():
    # No Accept-Encoding: the host hands the body over as the server sent it.
    return CaseInsensitiveDict({"User-Agent": default_user_agent(), "Accept": "*/*"})


def dict_from_cookiejar(cj):
    return {c.name: c.value for c in cj}


def add_dict_to_cookiejar(cj, cookie_dict):
    return cookiejar_from_dict(cookie_dict, cj)


def requote_uri(uri):
    return quote(unquote(uri), safe="!#$%&'()*+,/:;=?@[]~")


def charset_of(ctype):
    """The `charset` a Content-Type names, or None."""
    for part in (ctype or "").split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.lower() == "charset" and value:
            return value.strip("\"'")
    return None


def get_encoding_from_headers(headers):
    ctype = headers.get("content-type")
    if not ctype:
        return None
    charset = charset_of(ctype)
    if charset:
        return charset
    if "text" in ctype:
        return "ISO-8859-1"
    if "application/json" in ctype:
        return "utf-8"
    return None
