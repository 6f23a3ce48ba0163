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
