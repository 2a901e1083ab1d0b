"""The standard library's HTTP clients through the door: `http.client.HTTPConnection`
and `HTTPSConnection` are replaced by classes that hand each request to the host (under
the batch's HTTP policy, recorded and replayed like requests'), and `urllib.request`
gains the HTTPS handler it lacks without `ssl`. Installed once, at snapshot time.

http.client does not follow redirects, so neither do these; urllib.request follows them
itself, one request through the door per hop, each checked by the host.
"""

import http.client
import io
import socket
import urllib.request

import _sandstack_door as _door


class _Response(io.BytesIO):
    """What `HTTPConnection.getresponse()` returns: an `http.client.HTTPResponse` look-alike
    over the body the host sent."""

    def __init__(self, status, reason, pairs, body, method):
        super().__init__(body)
        self.status = status
        self.code = status
        self.reason = reason
        self.version = 11
        self.chunked = False
        self.will_close = True
        self._method = method
        self.headers = http.client.HTTPMessage()
        for k, v in pairs:
            self.headers[k] = v
        self.msg = self.headers
        self.length = len(body)

    def getheader(self, name, default=None):
        values = self.headers.get_all(name)
        return default if not values else ", ".join(values)

    def getheaders(self):
        return list(self.headers.items())

    def info(self):
        return self.headers

    def geturl(self):
        return getattr(self, "url", None)

    def getcode(self):
        return self.status

    def isclosed(self):
        return self.closed

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()


class HTTPConnection(http.client.HTTPConnection):
    """`http.client.HTTPConnection` through the door. It subclasses the stdlib's class for
    its helpers (urllib calls some of them) and overrides everything that would touch a
    socket."""

    default_port = http.client.HTTP_PORT
    scheme = "http"
    debuglevel = 0

    def __init__(self, host, port=None, timeout=socket._GLOBAL_DEFAULT_TIMEOUT,
                 source_address=None, blocksize=8192, **_ignored):
        if port is None and ":" in host.rsplit("]", 1)[-1]:
            host, _, port = host.rpartition(":")
        self.host = host.strip("[]") if host.startswith("[") else host
        self.port = int(port) if port else self.default_port
        self.timeout = None if timeout is socket._GLOBAL_DEFAULT_TIMEOUT else timeout
        self.debuglevel = 0
        self.sock = None  # never a socket: urllib checks it after a response
        self._pending = None
        self._headers = []
        self._body = b""

    def set_debuglevel(self, level):
        self.debuglevel = level

    def set_tunnel(self, host, port=None, headers=None):
        pass

    def connect(self):
        pass

    def close(self):
        self._pending = None

    # The low-level interface: putrequest, putheader, endheaders, send.
    def putrequest(self, method, url, skip_host=False, skip_accept_encoding=False):
        self._pending = (method, url)
        self._headers = []
        self._body = b""
        if not skip_host:
            default = self.port == self.default_port
            self._headers.append(("Host", self.host if default else f"{self.host}:{self.port}"))

    def putheader(self, header, *values):
        self._headers.append((str(header), ", ".join(str(v) for v in values)))

    def endheaders(self, message_body=None, *, encode_chunked=False):
        if message_body is not None:
            self.send(message_body)

    def send(self, data):
        if hasattr(data, "read"):
            data = data.read()
        if isinstance(data, str):
            data = data.encode("iso-8859-1")
        if not isinstance(data, (bytes, bytearray)):
            data = b"".join(bytes(chunk) for chunk in data)
        self._body += bytes(data)

    def request(self, method, url, body=None, headers=None, *, encode_chunked=False):
        headers = dict(headers or {})
        names = {k.lower() for k in headers}
        self.putrequest(method, url, skip_host="host" in names)
        for k, v in headers.items():
            self.putheader(k, v)
        if body is not None:
            if isinstance(body, str):
                body = body.encode("iso-8859-1")
            self.send(body)
            if "content-length" not in names and "transfer-encoding" not in names:
                self._headers.append(("Content-Length", str(len(self._body))))
        self.endheaders()

    def getresponse(self):
        if self._pending is None:
            raise http.client.ResponseNotReady("no request was sent")
        method, url = self._pending
        self._pending = None
        if not url.startswith(("http://", "https://")):
            default = self.port == self.default_port
            netloc = self.host if default else f"{self.host}:{self.port}"
            url = f"{self.scheme}://{netloc}{url if url.startswith('/') else '/' + url}"
        header = {
            "method": method,
            "url": url,
            "headers": [[k, v] for k, v in self._headers if k.lower() != "host"],
            "timeout": self.timeout,
            "follow_redirects": False,
        }
        try:
            reply, body = _door.call("http", header, self._body)
        except _door.DoorError as e:
            if e.kind in ("timeout", "connect_timeout"):
                raise TimeoutError(str(e)) from None
            raise ConnectionError(str(e)) from None
        return _Response(reply["status"], reply.get("reason", ""), reply.get("headers", []), bytes(body), method)


class HTTPSConnection(HTTPConnection):
    """`http.client.HTTPSConnection` through the door (the host speaks TLS)."""

    default_port = http.client.HTTPS_PORT
    scheme = "https"

    def __init__(self, host, port=None, *args, context=None, **kwargs):
        super().__init__(host, port, *args, **kwargs)


class HTTPSHandler(urllib.request.AbstractHTTPHandler):
    """urllib's HTTPS handler, which the stdlib defines only when `ssl` imports."""

    def __init__(self, debuglevel=None, context=None, check_hostname=None):
        super().__init__(debuglevel)

    def https_open(self, req):
        return self.do_open(http.client.HTTPSConnection, req)

    https_request = urllib.request.AbstractHTTPHandler.do_request_


def install():
    http.client.HTTPConnection = HTTPConnection
    http.client.HTTPSConnection = HTTPSConnection
    urllib.request.HTTPSHandler = HTTPSHandler
    if "HTTPSHandler" not in urllib.request.__all__:
        urllib.request.__all__.append("HTTPSHandler")
    # urlopen's default opener is built on first use; build it now, with HTTPS.
    urllib.request.install_opener(urllib.request.build_opener())
