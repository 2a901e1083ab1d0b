"""Authentication helpers of `requests` (basic auth)."""

import base64


class AuthBase:
    def __call__(self, r):
        raise NotImplementedError("Auth hooks must be callable.")


class HTTPBasicAuth(AuthBase):
    def __init__(self, username, password):
        self.username = username
        self.password = password

    def header(self):
        raw = f"{self.username}:{self.password}".encode("latin-1")
        return "Basic " + base64.b64encode(raw).decode("ascii")

    def __call__(self, r):
        r.headers["Authorization"] = self.header()
        return r
