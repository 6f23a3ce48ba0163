"""Draw docs/architecture.md's layer picture from the code (its import statements).

Usage: ``python docs/make_architecture.py`` rewrites the mermaid block between the
``graph:start`` / ``graph:end`` markers of docs/architecture.md; ``--check`` exits 1 when
the block differs from what the code gives (``tests/test_docs.py`` runs that check, so the
picture cannot drift from the code).

Nodes: the stage flows (``flows/<stage>.py`` that define a Prefect flow), the task modules
that define Prefect tasks (``tasks/<module>.py``; the other task modules are the shared
orchestration layer, one node), the library's packages (``src/brainxai/<package>/``) and
its single-file modules (one node). Edges: flow -> task module and task module -> library
package, as imported; a dotted edge where a flow imports a library package directly.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "architecture.md"
START, END = "<!-- graph:start (docs/make_architecture.py) -->", "<!-- graph:end -->"
#: Not stages: the command line, the study composition, deployment wrappers, tools.
NOT_STAGES = {"__init__", "cli", "study", "deployments", "orchestrate", "plan"}


def _tree(path: Path) -> ast.Module:
    return ast.parse(path.read_text(), filename=str(path))


def _imports(path: Path) -> set[str]:
    out: set[str] = set()
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.Import):
            out |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module)
            out |= {f"{node.module}.{a.name}" for a in node.names}
    return out


def _decorated_with(path: Path, name: str) -> bool:
    for node in ast.walk(_tree(path)):
        if isinstance(node, ast.FunctionDef):
            for dec in node.decorator_list:
                target = dec.func if isinstance(dec, ast.Call) else dec
                if getattr(target, "id", getattr(target, "attr", None)) == name:
                    return True
    return False


def _under(names: set[str], top: str, known: set[str]) -> list[str]:
    """Second-level names ``top.<x>`` in ``names`` that are in ``known``."""
    return sorted({n.split(".")[1] for n in names if n.startswith(f"{top}.")} & known)


def graph(root: Path = ROOT) -> str:
    """The mermaid flowchart of the code under ``root``."""
    lib = root / "src" / "brainxai"
    packages = {p.name for p in lib.iterdir() if (p / "__init__.py").is_file()}
    modules = {p.stem for p in lib.glob("*.py") if p.stem != "__init__"}
    task_files = {p.stem: p for p in sorted((root / "tasks").glob("*.py"))}
    stage_tasks = {n for n, p in task_files.items() if _decorated_with(p, "task")}
    shared = sorted(set(task_files) - stage_tasks - {"__init__"})
    flow_files = {
        p.stem: p
        for p in sorted((root / "flows").glob("*.py"))
        if p.stem not in NOT_STAGES and _decorated_with(p, "flow")
    }
    lines = [
        "```mermaid",
        "flowchart LR",
        '  dvc["dvc.yaml<br/>(dvc repro, make study)"] --> cli["brainxai CLI<br/>flows/cli.py"]',
        '  prefect["prefect.yaml<br/>deployments"] --> flows',
        '  cli --> study["flows/study.py<br/>(every stage, in order)"] --> flows',
        "  cli --> flows",
        '  subgraph flows["flows/: one Prefect flow per stage"]',
    ]
    lines += [f'    f_{n}["{n}"]' for n in flow_files]
    lines += ["  end", '  subgraph tasks["tasks/: cached Prefect tasks"]']
    lines += [f'    t_{n}["{n}"]' for n in sorted(stage_tasks)]
    lines += ["  end", '  subgraph lib["src/brainxai/: domain library (no Prefect, MLflow, DVC)"]']
    lines += [f'    b_{n}["{n}/"]' for n in sorted(packages)]
    lines += [f'    b_modules["{", ".join(sorted(modules))}"]', "  end"]
    lines += [f'  shared["tasks/ shared: {", ".join(shared)}"]', "  flows --> shared"]
    for name, path in flow_files.items():
        imported = _imports(path)
        for t in _under(imported, "tasks", stage_tasks):
            lines.append(f"  f_{name} --> t_{t}")
        for b in _under(imported, "brainxai", packages):
            lines.append(f"  f_{name} -.-> b_{b}")
    for name in sorted(stage_tasks):
        imported = _imports(task_files[name])
        for b in _under(imported, "brainxai", packages):
            lines.append(f"  t_{name} --> b_{b}")
        if _under(imported, "brainxai", modules):
            lines.append(f"  t_{name} --> b_modules")
    lines.append("```")
    return "\n".join(lines)


def embedded(doc: Path = DOC) -> str:
    text = doc.read_text()
    return text[text.index(START) + len(START) : text.index(END)].strip("\n")


def write(doc: Path = DOC) -> None:
    text = doc.read_text()
    head, tail = text[: text.index(START) + len(START)], text[text.index(END) :]
    doc.write_text(f"{head}\n{graph()}\n{tail}")


if __name__ == "__main__":
    if "--check" in sys.argv[1:]:
        sys.exit(0 if embedded() == graph() else 1)
    write()
