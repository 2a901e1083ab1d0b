#!/usr/bin/env python3
"""Check sandstack's module layering (ARCHITECTURE.md).

Reads every `crate::` and `super::` path in the source tree (use lines and
inline paths; comments and strings skipped), and reports:
  - a top-level module missing from LAYERS (every module has a floor);
  - a top-level module that uses one above it in LAYERS;
  - a cycle of files of any length (a strongly connected component of the
    file-to-file import graph), printed as one path around it.
A module using its own submodules, or a submodule its parent (`super::`), is
containment, not a cycle, and is left out. Exits 1 on any problem.

Usage: dep-cycles.py [SRC_DIR]   (default: src, from the repository root)"""
import os
import re
import sys

# Bottom to top: a module may use the ones before it.
LAYERS = ["escape", "outbound", "cassette", "child", "config", "domain", "drawing", "telemetry", "file_names", "sandbox",
          "store", "warehouse", "llm", "models", "jobs", "alerts", "pipeline", "folder_tests", "scheduler", "web",
          "cli"]
# The crate roots: they declare the modules, so they use every one.
ROOTS = {(), ("main",)}


def code_only(text):
    text = re.sub(r"//[^\n]*", "", text)
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r'"(\\.|[^"\\])*"', '""', text)


def module_of(root, path):
    """src/a/b.rs -> ('a','b'); src/a/mod.rs -> ('a',); src/lib.rs -> ()"""
    rel = os.path.relpath(path, root)[:-3].split(os.sep)
    if rel[-1] in ("mod", "lib"):
        rel = rel[:-1]
    return tuple(rel)


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


def contains(a, b):
    """One module is the other's ancestor."""
    return a == b[: len(a)] or b == a[: len(b)]


def read_graph(root):
    files = {}
    for d, _, names in os.walk(root):
        for name in names:
            if name.endswith(".rs"):
                p = os.path.join(d, name)
                files[module_of(root, p)] = p
    edges = {m: set() for m in files}
    for mod, path in files.items():
        text = code_only(open(path, encoding="utf-8").read())
        is_dir_mod = os.path.basename(path) in ("mod.rs", "lib.rs")
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
                edges[mod].add(f)
    return files, edges


def strongly_connected(nodes, edges):
    """Tarjan's algorithm, iterative (deep module trees must not hit
    Python's recursion limit). Components of more than one node."""
    index, low, on_stack, stack, out = {}, {}, set(), [], []
    counter = 0
    for start in nodes:
        if start in index:
            continue
        work = [(start, iter(sorted(edges[start])))]
        index[start] = low[start] = counter
        counter += 1
        stack.append(start)
        on_stack.add(start)
        while work:
            node, children = work[-1]
            advanced = False
            for child in children:
                if child not in index:
                    index[child] = low[child] = counter
                    counter += 1
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(edges[child]))))
                    advanced = True
                    break
                if child in on_stack:
                    low[node] = min(low[node], index[child])
            if advanced:
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    n = stack.pop()
                    on_stack.discard(n)
                    component.append(n)
                    if n == node:
                        break
                if len(component) > 1:
                    out.append(sorted(component))
    return out


def cycle_path(component, edges):
    """One cycle through the component's first node, by breadth-first search."""
    members = set(component)
    start = component[0]
    previous = {start: None}
    queue = [start]
    while queue:
        node = queue.pop(0)
        for nxt in sorted(edges[node] & members):
            if nxt == start:
                path = [node]
                while previous[path[-1]] is not None:
                    path.append(previous[path[-1]])
                return list(reversed(path)) + [start]
            if nxt not in previous:
                previous[nxt] = node
                queue.append(nxt)
    return component


def problems_in(root):
    files, edges = read_graph(root)
    problems = []
    tops = sorted({m[0] for m in files if m and m not in ROOTS})
    for top in tops:
        if top not in LAYERS:
            problems.append(f"layer: module `{top}` has no floor: add it to LAYERS in {sys.argv[0]}"
                            " (and ARCHITECTURE.md) where its imports put it")
    for a in sorted(edges):
        for b in sorted(edges[a]):
            if a and b and a[0] in LAYERS and b[0] in LAYERS and a[0] != b[0]:
                if LAYERS.index(b[0]) > LAYERS.index(a[0]):
                    problems.append(f"layer: {files[a]} uses {files[b]} ({a[0]} is below {b[0]})")
    # Containment is not a cycle; nor is a crate root declaring modules.
    acyclic = {a: {b for b in bs if not contains(a, b) and a not in ROOTS}
               for a, bs in edges.items()}
    for component in strongly_connected(sorted(acyclic), acyclic):
        path = cycle_path(component, acyclic)
        shown = " -> ".join(files[m] for m in path)
        problems.append(f"cycle ({len(component)} files): {shown}")
    return files, edges, problems


def main():
    root = sys.argv[1] if len(sys.argv) > 1 else "src"
    if not os.path.isdir(root):
        print(f"dep-cycles: {root} is not a directory (run from the repository root, or pass src/)")
        return 2
    files, edges, problems = problems_in(root)
    for p in problems:
        print(p)
    n = sum(len(t) for t in edges.values())
    print(f"{len(files)} files, {n} file-to-file imports, {len(problems)} problems")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
