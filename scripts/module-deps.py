#!/usr/bin/env python3
"""Prints which top-level modules of the node crate (src/, or the directory given) use
which, from their `crate::` paths, and fails if they do not form a DAG. A module's own
children (its `super::` and `crate::<itself>::` paths) do not count; comments are skipped."""

import re
import sys
from collections import defaultdict
from pathlib import Path

SRC = Path(sys.argv[1]) if len(sys.argv) > 1 else Path(__file__).resolve().parent.parent / "src"
CRATE_PATH = re.compile(r"\bcrate::(?:\{([^}]*)\}|(\w+))")


def top_module(path: Path) -> str:
    return path.relative_to(SRC).parts[0].removesuffix(".rs")


def uses(path: Path) -> set[str]:
    found = set()
    for line in path.read_text().splitlines():
        code = line.split("//", 1)[0]
        for group, single in CRATE_PATH.findall(code):
            names = [single] if single else [n.strip().split("::")[0] for n in group.split(",")]
            found.update(n for n in names if n and n != "self")
    return found


def main() -> int:
    graph = defaultdict(set)
    for path in sorted(SRC.rglob("*.rs")):
        module = top_module(path)
        if module in ("lib", "main"):
            continue
        graph[module].update(uses(path) - {module})
    for module in sorted(graph):
        print(f"{module} -> {', '.join(sorted(graph[module])) or '(nothing)'}")
    # Depth-first search; a node met again while still on the stack closes a cycle.
    state, stack, cycles = {}, [], []

    def visit(module):
        state[module] = "open"
        stack.append(module)
        for used in sorted(graph.get(module, ())):
            if state.get(used) == "open":
                cycles.append(stack[stack.index(used):] + [used])
            elif used not in state:
                visit(used)
        stack.pop()
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module)
    for cycle in cycles:
        print("cycle: " + " -> ".join(cycle))
    if cycles:
        return 1
    print("no cycles between top-level modules")
    return 0


if __name__ == "__main__":
    sys.exit(main())
