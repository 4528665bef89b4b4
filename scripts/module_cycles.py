#!/usr/bin/env python3
"""Finds import cycles between the modules of each service crate.

Reads every `.rs` file under `services/<ctx>/src`, takes each path it names
through `crate::`, `super::` or `self::` (in `use` lines and in code), resolves
it to the deepest module file that exists, and reports every cycle of the
resulting graph (a module naming one that names it back, directly or through a
chain). A module naming its own ancestors' items (`super::STREAM` in
`events/consume.rs`) is an edge like any other; declaring a child (`pub mod x;`)
is not. Test modules (`#[cfg(test)] mod tests`) are left out: they may name
anything. Exits 1 when there is a cycle, listing it.

    python3 scripts/module_cycles.py [services/<ctx> ...]
"""

import re
import sys
from pathlib import Path

PATH = re.compile(r"\b(crate|super|self)((?:::[A-Za-z_][A-Za-z0-9_]*)+|::\{)")
USE_GROUP = re.compile(r"\buse\s+(crate|super|self)::([^;]*);", re.S)


def module_of(src: Path, file: Path) -> tuple:
    rel = file.relative_to(src).with_suffix("")
    parts = list(rel.parts)
    if parts in (["lib"], ["main"]):
        return ()
    if parts[-1] == "mod":
        parts = parts[:-1]
    return tuple(parts)


def strip_tests(text: str) -> str:
    """Drops `#[cfg(test)] mod … { … }` blocks (brace-matched)."""
    out, i = [], 0
    for m in re.finditer(r"#\[cfg\(test\)\]\s*mod\s+\w+\s*\{", text):
        if m.start() < i:
            continue
        out.append(text[i : m.start()])
        depth, j = 1, m.end()
        while j < len(text) and depth:
            depth += {"{": 1, "}": -1}.get(text[j], 0)
            j += 1
        i = j
    out.append(text[i:])
    return "".join(out)


def strip_comments(text: str) -> str:
    text = re.sub(r"/\*.*?\*/", "", text, flags=re.S)
    return re.sub(r"//[^\n]*", "", text)


def expand_use(base: str, body: str) -> list:
    """`a::{b, c::{d}}` -> ["a::b", "a::c::d"] (enough to name modules)."""
    body = re.sub(r"\s+", "", body)

    def walk(prefix, s):
        if "{" not in s:
            return [prefix + s] if s else [prefix.rstrip(":")]
        head, rest = s.split("{", 1)
        inner = rest[: rest.rfind("}")]
        items, depth, cur = [], 0, ""
        for ch in inner:
            if ch == "," and depth == 0:
                items.append(cur)
                cur = ""
                continue
            depth += {"{": 1, "}": -1}.get(ch, 0)
            cur += ch
        items.append(cur)
        out = []
        for it in items:
            if it:
                out += walk(prefix + head, it)
        return out

    return [f"{base}::{p}" for p in walk("", body)]


def resolve(modules: set, here: tuple, path: str) -> tuple:
    segs = path.split("::")
    if segs[0] == "crate":
        cur = ()
    elif segs[0] == "self":
        cur = here
    else:
        cur = here
        while segs and segs[0] == "super":
            cur = cur[:-1]
            segs = segs[1:]
        segs = ["super"] + segs
    best = cur
    for s in segs[1:]:
        nxt = best + (s,)
        if nxt in modules:
            best = nxt
        else:
            break
    return best


def graph(crate: Path) -> dict:
    src = crate / "src"
    files = [f for f in src.rglob("*.rs") if f.name != "main.rs" and "bin" not in f.parts]
    modules = {module_of(src, f) for f in files}
    edges = {m: set() for m in modules}
    for f in files:
        here = module_of(src, f)
        text = strip_comments(strip_tests(f.read_text()))
        paths = []
        for m in USE_GROUP.finditer(text):
            paths += expand_use(m.group(1), m.group(2))
        text = USE_GROUP.sub("", text)
        paths += [m.group(1) + m.group(2) for m in PATH.finditer(text) if not m.group(2).endswith("{")]
        for p in paths:
            target = resolve(modules, here, p)
            # A module naming itself or a child it declares is not an import.
            if target != here and target[: len(here)] != here:
                edges[here].add(target)
    return edges


def cycles(edges: dict) -> list:
    found, index, low, stack, on = [], {}, {}, [], set()

    def strong(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in edges[v]:
            if w not in index:
                strong(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(comp)

    sys.setrecursionlimit(10000)
    for v in edges:
        if v not in index:
            strong(v)
    return found


def name(m: tuple) -> str:
    return "::".join(m) or "lib"


def main(argv):
    crates = [Path(a) for a in argv] or sorted(Path("services").glob("*/"))
    bad = False
    for crate in crates:
        if not (crate / "src" / "lib.rs").exists():
            continue
        edges = graph(crate)
        comps = cycles(edges)
        for comp in comps:
            bad = True
            members = set(comp)
            detail = "; ".join(
                f"{name(a)} -> {name(b)}" for a in sorted(comp) for b in sorted(edges[a]) if b in members
            )
            print(f"{crate}: cycle among {', '.join(sorted(map(name, comp)))}: {detail}")
        if not comps:
            print(f"{crate}: no cycles ({len(edges)} modules)")
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
