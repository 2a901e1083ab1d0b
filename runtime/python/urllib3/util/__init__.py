"""`urllib3.util`: `Retry`."""

from .retry import Retry

__all__ = ["Retry"]
