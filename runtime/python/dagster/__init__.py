"""A stand-in for the part of Dagster that Anomstack ingest functions use:
`get_dagster_logger()`, whose records go to the sandstack run's log through the door."""

import logging

import _sandstack_door as _door


class _DoorHandler(logging.Handler):
    def emit(self, record):
        try:
            _door.log(record.levelname.lower(), self.format(record))
        except Exception:
            self.handleError(record)


def get_dagster_logger(name=None):
    logger = logging.getLogger("dagster" if not name else f"dagster.{name}")
    if not any(isinstance(h, _DoorHandler) for h in logger.handlers):
        logger.addHandler(_DoorHandler())
        logger.setLevel(logging.DEBUG)
        logger.propagate = False
    return logger


__all__ = ["get_dagster_logger"]
