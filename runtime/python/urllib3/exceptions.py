"""urllib3's exception names, for code that imports or catches them."""


class HTTPError(Exception):
    pass


class HTTPWarning(Warning):
    pass


class InsecureRequestWarning(HTTPWarning):
    pass


class MaxRetryError(HTTPError):
    def __init__(self, pool, url, reason=None):
        super().__init__(f"Max retries exceeded with url: {url} (Caused by {reason!r})")
        self.url = url
        self.reason = reason


class NewConnectionError(HTTPError):
    pass


class TimeoutError(HTTPError):  # noqa: A001 - urllib3's own name
    pass


class ReadTimeoutError(TimeoutError):
    pass


class ConnectTimeoutError(TimeoutError):
    pass
