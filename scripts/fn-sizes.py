#!/usr/bin/env python3
"""List the longest functions and the widest signatures under src/.

Counts a function from its `fn` line to its closing brace (brace matching
that skips strings, chars and comments); parameters are counted from the
signature, `self` included."""
import os, re, sys

root = sys.argv[1] if len(sys.argv) > 1 else "src"
top = int(sys.argv[2]) if len(sys.argv) > 2 else 10
FN = re.compile(r"^\s*(pub(\([^)]*\))?\s+)?(const\s+)?(async\s+)?(unsafe\s+)?fn\s+(\w+)")

def strip(text):
    """Blank out strings, chars and comments, keeping line structure."""
    out, i, n = [], 0, len(text)
    while i < n:
        c = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            j = n if j < 0 else j
            out.append(" " * (j - i)); i = j
        elif text.startswith("/*", i):
            j = text.find("*/", i + 2); j = n if j < 0 else j + 2
            out.append(re.sub(r"[^\n]", " ", text[i:j])); i = j
        elif c == "r" and re.match(r'r#*"', text[i:i+10]) and (i == 0 or not (text[i-1].isalnum() or text[i-1] == "_")):
            m = re.match(r'r(#*)"', text[i:]); hashes = m.group(1)
            end = text.find('"' + hashes, i + len(m.group(0)))
            end = n if end < 0 else end + 1 + len(hashes)
            out.append(re.sub(r"[^\n]", " ", text[i:end])); i = end
        elif c == '"':
            j = i + 1
            while j < n and text[j] != '"':
                j += 2 if text[j] == "\\" else 1
            out.append(re.sub(r"[^\n]", " ", text[i:j+1])); i = j + 1
        elif c == "'" and re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i+12]):
            m = re.match(r"'(\\.|[^\\'])'|'\\u\{[0-9a-fA-F]+\}'", text[i:i+12])
            out.append(" " * len(m.group(0))); i += len(m.group(0))
        else:
            out.append(c); i += 1
    return "".join(out)

fns = []
for d, _, files in os.walk(root):
    for f in files:
        if not f.endswith(".rs"):
            continue
        path = os.path.join(d, f)
        src = strip(open(path, encoding="utf-8").read())
        lines = src.split("\n")
        in_tests = None
        for ln, line in enumerate(lines):
            m = FN.match(line)
            if not m:
                continue
            # signature: up to the first `{` or `;` at depth 0 of parens
            sig, depth, k, col = "", 0, ln, m.end()
            body_start = None
            text = "\n".join(lines[ln:ln+40])
            pos = text.find("fn")
            par = 0
            for idx in range(pos, len(text)):
                ch = text[idx]
                if ch in "(<[": par += 1
                elif ch in ")>]": par -= 1 if ch != ">" or text[idx-1] != "-" else 0
                if par == 0 and ch in "{;":
                    body_start = idx; break
            if body_start is None or text[body_start] == ";":
                continue
            sig = text[pos:body_start]
            p = sig.find("(")
            depth, params, cur = 0, [], ""
            for ch in sig[p+1:]:
                if ch in "(<[": depth += 1
                if ch in ")>]" and depth == 0 and ch == ")":
                    break
                if ch in ")>]": depth -= 1
                if ch == "," and depth == 0:
                    params.append(cur); cur = ""
                else:
                    cur += ch
            if cur.strip(): params.append(cur)
            nparams = len([x for x in params if x.strip()])
            # body length by brace matching from body_start
            flat = "\n".join(lines[ln:])
            start = flat.find("{", flat.find("fn") + (body_start - pos))
            depth, end = 0, None
            for idx in range(start, len(flat)):
                if flat[idx] == "{": depth += 1
                elif flat[idx] == "}":
                    depth -= 1
                    if depth == 0: end = idx; break
            length = flat[:end].count("\n") + 1 if end else 0
            fns.append((length, nparams, f"{path}:{ln+1}", m.group(6)))

print(f"{'lines':>5}  function")
for length, _, where, name in sorted(fns, reverse=True)[:top]:
    print(f"{length:>5}  {name}  ({where})")
print(f"\n{'params':>6}  function")
for _, nparams, where, name in sorted(fns, key=lambda x: (-x[1], -x[0]))[:top]:
    print(f"{nparams:>6}  {name}  ({where})")
