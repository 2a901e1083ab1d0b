"""The part of urllib3 that code using requests imports: `Retry`, `disable_warnings` and
the exceptions. sandstack's requests sends through the host, not through urllib3."""

from . import exceptions
from .util.retry import Retry

__version__ = "2.2.0+sandstack"

__all__ = ["Retry", "disable_warnings", "exceptions"]


def disable_warnings(category=None):
    """Nothing to silence: the host, not urllib3, makes the connections."""
