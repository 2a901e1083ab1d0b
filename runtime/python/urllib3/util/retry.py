"""`urllib3.util.retry.Retry`: how many times, on what, and how long to wait between."""

DEFAULT_ALLOWED_METHODS = frozenset(["HEAD", "GET", "PUT", "DELETE", "OPTIONS", "TRACE"])
RETRY_AFTER_STATUS_CODES = frozenset([413, 429, 503])
DEFAULT_BACKOFF_MAX = 120


class Retry:
    DEFAULT_ALLOWED_METHODS = DEFAULT_ALLOWED_METHODS
    RETRY_AFTER_STATUS_CODES = RETRY_AFTER_STATUS_CODES
    DEFAULT_BACKOFF_MAX = DEFAULT_BACKOFF_MAX

    def __init__(self, total=10, connect=None, read=None, redirect=None, status=None, other=None,
                 allowed_methods=DEFAULT_ALLOWED_METHODS, status_forcelist=None, backoff_factor=0,
                 backoff_max=DEFAULT_BACKOFF_MAX, raise_on_redirect=True, raise_on_status=True,
                 history=None, respect_retry_after_header=True, method_whitelist=None, **_ignored):
        self.total = total
        self.connect = connect
        self.read = read
        self.redirect = redirect
        self.status = status
        self.other = other
        # urllib3 1.x called it method_whitelist.
        self.allowed_methods = method_whitelist if method_whitelist is not None else allowed_methods
        self.status_forcelist = set(status_forcelist or ())
        self.backoff_factor = backoff_factor
        self.backoff_max = backoff_max
        self.raise_on_redirect = raise_on_redirect
        self.raise_on_status = raise_on_status
        self.history = tuple(history or ())
        self.respect_retry_after_header = respect_retry_after_header

    @classmethod
    def from_int(cls, retries, redirect=True, default=None):
        if retries is None:
            retries = default if default is not None else cls.DEFAULT
        if isinstance(retries, Retry):
            return retries
        return cls(int(retries), redirect=redirect)

    def _budget(self, specific):
        counts = [c for c in (self.total, specific) if c is not None and c is not False]
        return min(counts) if counts else 0

    def attempts(self, kind):
        """Retries left for a failure of `kind` ("connect", "read" or "status")."""
        specific = {"connect": self.connect, "read": self.read, "status": self.status}[kind]
        if specific is False:
            return 0
        return self._budget(specific)

    def is_retry(self, method, status_code, has_retry_after=False):
        if self.allowed_methods and method.upper() not in self.allowed_methods:
            return False
        if status_code in self.status_forcelist:
            return True
        return bool(self.total) and self.respect_retry_after_header and has_retry_after and (
            status_code in self.RETRY_AFTER_STATUS_CODES)

    def get_backoff_time(self, consecutive_errors):
        if consecutive_errors <= 1:
            return 0
        return min(self.backoff_max, self.backoff_factor * (2 ** (consecutive_errors - 1)))

    def __repr__(self):
        return (f"Retry(total={self.total}, connect={self.connect}, read={self.read}, "
                f"status={self.status}, status_forcelist={sorted(self.status_forcelist)})")


Retry.DEFAULT = Retry(3)
