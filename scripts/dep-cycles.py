#!/usr/bin/env python3
"""Check sandstack's module layering (ARCHITECTURE.md).

Reads every `crate::` and `super::` path in src/ (use lines and inline paths,
comments and strings skipped), then reports:
  - a top-level module that uses one below it in LAYERS;
  - two source files that import each other.
Exits 1 if it finds either. Run from the repository root."""
import os
import re
import sys

LAYERS = ["escape", "child", "config", "domain", "file_names", "sandbox", "store", "models", "jobs",
          "alerts", "scheduler", "web", "cli"]
ROOT = "src"


def code_only(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def module_of(path):
    """src/a/b.rs -> ['a','b']; src/a/mod.rs -> ['a']; src/lib.rs -> []"""
    rel = os.path.relpath(path, ROOT)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib", "main"):
        rel = rel[:-1]
    return rel


def file_for(mod, files):
    """The longest module prefix of `mod` that is a file."""
    for n in range(len(mod), 0, -1):
        if tuple(mod[:n]) in files:
            return tuple(mod[:n])
    return None


def paths_in(text):
    # `use crate::a::{b, c::d}` and inline `crate::a::b` / `super::x`.
    for m in re.finditer(r"\b(crate|super(?:::super)*)::([A-Za-z_][\w:]*(?:::\{[^;]*\})?)", text):
        head, rest = m.group(1), m.group(2)
        if "{" in rest:
            base, inner = rest.split("{", 1)
            for part in re.split(r",", inner.rstrip("}")):
                part = part.strip()
                if part:
                    yield head, (base + part).replace("{", "").replace("}", "")
        else:
            yield head, rest


def main():
    files = {}
    for d, _, names in os.walk(ROOT):
        for name in names:
            if name.endswith(".rs"):
                p = os.path.join(d, name)
                files[tuple(module_of(p))] = p
    edges = {}
    for mod, path in files.items():
        text = code_only(open(path, encoding="utf-8").read())
        is_dir_mod = os.path.basename(path) in ("mod.rs", "lib.rs", "main.rs")
        for head, rest in paths_in(text):
            parts = [p for p in rest.split("::") if p and p != "self"]
            if head == "crate":
                target = parts
            else:
                ups = head.count("super")
                base = list(mod) if is_dir_mod else list(mod[:-1])
                base = base[: len(base) - (ups - 1)] if ups > 1 else base
                target = base + parts
            f = file_for(target, files)
            if f and f != mod:
                edges.setdefault(mod, set()).add(f)
    problems = []
    for a, targets in edges.items():
        for b in targets:
            if a[:1] and b[:1] and a[0] in LAYERS and b[0] in LAYERS and a[0] != b[0]:
                if LAYERS.index(b[0]) > LAYERS.index(a[0]):
                    problems.append(f"layer: {files[a]} uses {files[b]} ({a[0]} is above {b[0]})")
            if a in edges.get(b, ()) and a < b:
                # A parent module re-exporting its child is not a cycle.
                if a != b[: len(a)] and b != a[: len(b)]:
                    problems.append(f"cycle: {files[a]} <-> {files[b]}")
    for p in sorted(problems):
        print(p)
    n = sum(len(t) for t in edges.values())
    print(f"{len(files)} files, {n} file-to-file imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
