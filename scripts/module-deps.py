#!/usr/bin/env python3
"""Checks that a crate's modules form a DAG at every level: for each module, which of its
sibling modules it uses (from `crate::` and `super::` paths), and fails on a cycle. A module
may use its own descendants and its ancestors; `tests` modules (compiled for tests only) are
left out, as is everything from a file's `#[cfg(test)]` on. Prints the top level's graph. Usage: module-deps.py [SRC_DIR ...] (default: the node
crate's src/ and the core crate's core/src/)."""

import re
import sys
from collections import defaultdict
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PATH = re.compile(r"\b(crate|super)::((?:\w+::)*)(?:\{([^}]*)\}|(\w+))")


def module_path(src: Path, file: Path) -> list[str]:
    parts = list(file.relative_to(src).with_suffix("").parts)
    if parts[-1] in ("mod", "lib", "main"):
        parts.pop()
    return parts


def referenced(file_module: list[str], code: str):
    for kind, prefix, group, single in PATH.findall(code):
        base = [] if kind == "crate" else file_module[:-1]
        heads = [p for p in prefix.split("::") if p]
        tails = [single] if single else [n.strip().split("::")[0] for n in group.split(",")]
        for tail in tails:
            if tail and tail != "self":
                yield base + heads + [tail]


def edges(src: Path):
    for file in sorted(src.rglob("*.rs")):
        me = module_path(src, file)
        if "tests" in me:
            continue
        for line in file.read_text().splitlines():
            # A file's own test module comes last by convention.
            if line.rstrip() == "#[cfg(test)]":
                break
            for target in referenced(me, line.split("//", 1)[0]):
                depth = 0
                while depth < min(len(me), len(target)) and me[depth] == target[depth]:
                    depth += 1
                # Within our own subtree, or an ancestor, or an item of the shared parent.
                if depth == len(me) or depth == len(target) or depth + 1 == len(target) and target[depth][0].isupper():
                    continue
                parent = "::".join(me[:depth]) or "crate"
                yield parent, me[depth], target[depth]


def cycles_in(graph) -> list[list[str]]:
    state, stack, found = {}, [], []

    def visit(node):
        state[node] = "open"
        stack.append(node)
        for used in sorted(graph.get(node, ())):
            if state.get(used) == "open":
                found.append(stack[stack.index(used):] + [used])
            elif used not in state:
                visit(used)
        stack.pop()
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node)
    return found


def check(src: Path) -> bool:
    levels = defaultdict(lambda: defaultdict(set))
    for parent, user, used in edges(src):
        if user != used and not used[0].isupper():
            levels[parent][user].add(used)
    print(f"== {src.relative_to(ROOT)}")
    for module in sorted(levels["crate"]):
        print(f"{module} -> {', '.join(sorted(levels['crate'][module]))}")
    ok = True
    for parent in sorted(levels):
        for cycle in cycles_in(levels[parent]):
            ok = False
            print(f"cycle in {parent}: " + " -> ".join(cycle))
    return ok


def main() -> int:
    dirs = [Path(a).resolve() for a in sys.argv[1:]] or [ROOT / "src", ROOT / "core" / "src"]
    ok = all([check(d) for d in dirs])
    print("no cycles between modules" if ok else "module cycles found")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
