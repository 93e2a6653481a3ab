"""Print the import graph between amlit's packages (top-level modules count as their own node).

    python scripts/import_graph.py            # edges "from -> to (count)" between amlit/data, amlit/eval, ...
    python scripts/import_graph.py --modules  # the same between modules

Reads the source with ``ast`` (nothing is imported), counting every ``import amlit...`` / ``from amlit... import``,
including function-local ones. Used to check that dependencies go one way (``data -> eval``, never back).
"""

from __future__ import annotations

import argparse
import ast
from collections import Counter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parent.parent / "amlit"


def node_of(module: str, modules: bool) -> str:
    parts = module.split(".")
    if modules:
        return module
    # amlit.data.casia -> amlit.data; amlit.cli -> amlit.cli
    return ".".join(parts[:2]) if len(parts) > 2 or (PACKAGE / parts[-1]).is_dir() else module


def module_name(path: Path) -> str:
    relative = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(relative.parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def imports_of(path: Path) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.level == 0 and node.module.startswith("amlit"):
            # "from amlit import keys" names a module; "from amlit.x import name" names x
            if node.module == "amlit":
                found += [f"amlit.{alias.name}" for alias in node.names]
            else:
                found.append(node.module)
        elif isinstance(node, ast.Import):
            found += [alias.name for alias in node.names if alias.name.startswith("amlit")]
    return found


def edges(modules: bool) -> Counter:
    counts: Counter = Counter()
    for path in sorted(PACKAGE.rglob("*.py")):
        source = node_of(module_name(path), modules)
        for target in imports_of(path):
            target = node_of(target, modules)
            if target != source:
                counts[source, target] += 1
    return counts


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--modules", action="store_true", help="module-level edges instead of package-level")
    args = parser.parse_args()
    counts = edges(args.modules)
    for (source, target), count in sorted(counts.items()):
        back = counts.get((target, source), 0)
        mark = "  <-> cycle" if back else ""
        print(f"{source} -> {target} ({count}){mark}")


if __name__ == "__main__":
    main()
