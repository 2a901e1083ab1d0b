"""`requests.adapters`: `HTTPAdapter`, whose `max_retries` a Session honours.

There is no connection pool in the sandbox (the host makes each request), so the pool
arguments are accepted and ignored; `max_retries` (a count or a `urllib3.util.Retry`)
retries as urllib3 would.
"""

from urllib3.util.retry import Retry


class BaseAdapter:
    def close(self):
        pass


class HTTPAdapter(BaseAdapter):
    def __init__(self, pool_connections=10, pool_maxsize=10, max_retries=0, pool_block=False):
        if max_retries == 0 or max_retries is None:
            self.max_retries = Retry(0, read=False)
        else:
            self.max_retries = Retry.from_int(max_retries)
        self.config = {}
