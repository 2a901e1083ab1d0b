"""Installed once, when sandstack builds its snapshot: serves sandstack's guest modules
(requests, dagster, the driver) from sources held in memory, so the sandbox needs no
filesystem beyond the read-only stdlib."""

import importlib.abc
import importlib.util
import linecache
import sys


class _Finder(importlib.abc.MetaPathFinder, importlib.abc.InspectLoader):
    def __init__(self, sources):
        # name -> (source text, is_package)
        self.sources = sources

    def find_spec(self, name, path=None, target=None):
        if name not in self.sources:
            return None
        is_pkg = self.sources[name][1]
        return importlib.util.spec_from_loader(name, self, origin=self._filename(name), is_package=is_pkg)

    def _filename(self, name):
        suffix = "/__init__.py" if self.sources[name][1] else ".py"
        return "<sandstack>/" + name.replace(".", "/") + suffix

    def get_source(self, name):
        return self.sources[name][0]

    def is_package(self, name):
        return self.sources[name][1]

    def exec_module(self, module):
        name = module.__name__
        source = self.sources[name][0]
        filename = self._filename(name)
        module.__file__ = filename
        # Tracebacks through these modules show their lines.
        linecache.cache[filename] = (len(source), None, source.splitlines(True), filename)
        exec(compile(source, filename, "exec"), module.__dict__)


def install(sources):
    sys.meta_path.insert(0, _Finder(sources))
