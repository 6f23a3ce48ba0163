"""The domain library stays free of orchestration imports (architecture rule)."""

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "brainxai"
FORBIDDEN = {"prefect", "mlflow", "dvc", "flows", "tasks"}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module.split(".")[0])
    return names


def test_src_brainxai_imports_no_orchestration_package():
    offenders = {
        str(p.relative_to(SRC)): sorted(_imports(p) & FORBIDDEN) for p in SRC.rglob("*.py")
    }
    offenders = {k: v for k, v in offenders.items() if v}
    assert not offenders, offenders
    assert len(list(SRC.rglob("*.py"))) > 5


def _offenders(folder: str, forbidden: set[str]) -> dict[str, list[str]]:
    root = SRC.parents[1] / folder
    found = {str(p.relative_to(root)): sorted(_imports(p) & forbidden) for p in root.glob("*.py")}
    return {k: v for k, v in found.items() if v}


def test_tasks_import_no_flow():
    """Tasks sit below the flows: a task module never imports one (issue 19)."""
    assert not _offenders("tasks", {"flows"})


def test_benchmarks_import_the_library_and_tasks_never_a_flow():
    """Benchmarks measure the library and the tasks; a flow is run as a process (issue 19)."""
    assert not _offenders("benchmarks", {"flows"})
    assert len(list((SRC.parents[1] / "benchmarks").glob("*.py"))) > 5
