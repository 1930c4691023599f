"""The package keeps the shape ../shared/ARCHITECTURE.md draws: parts, allowed arrows, no cycles.

Every import counts, including those inside functions (deferred to keep ``import chartrvr_nb``
light, but dependencies all the same). A new module must be given a part here. The package root
(``__init__.py``: the logger set-up and ``UserError``) may be imported by every part and imports none.
"""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "chartrvr_nb"

PARTS = {
    "Root": {"__init__"},
    "Face": {"cli", "__main__"},
    "Cells": {"notebooks", "widgets"},
    "Workflows": {"learncheck", "fidelity", "run_report"},
    "Config": {
        "presets",
        "eval_config",
        "protocols",
        "settings",
        "env",
        "estimate",
        "step_figures",
        "gpu_fit",
        "batches",
    },
    "Train": {
        "train",
        "grpo_args",
        "trainer",
        "callbacks",
        "checkpoints",
        "resume",
        "disk_full",
        "drive",
        "runfiles",
        "runlock",
        "console",
        "tracking",
        "health",
        "doctor",
    },
    "Eval": {
        "evaluate",
        "generation",
        "eval_inputs",
        "eval_resume",
        "benchmarks",
        "benchmark_data",
        "eval_results",
        "eval_rewards",
        "metrics",
        "official_scoring",
    },
    "Models": {"models", "dtypes", "tiny", "qwen_tokenizer", "warm_start", "starting_point"},
    "Data": {"data", "train_data", "data_audit", "synthetic", "chart_kinds", "system_prompts"},
    "Scoring": {"answers", "rewards", "embedding", "prompts", "inspection", "samples"},
    "Plots": {"plots", "eval_plots"},
}
ALLOWED = {  # part -> the other parts it may use
    "Root": set(),
    "Face": {"Workflows", "Config", "Train", "Eval", "Models", "Scoring", "Cells", "Root"},
    "Cells": {"Workflows", "Config", "Train", "Eval", "Data", "Scoring", "Plots", "Root"},
    "Workflows": {"Config", "Train", "Eval", "Models", "Data", "Scoring", "Plots", "Root"},
    "Train": {"Config", "Models", "Data", "Scoring", "Root"},
    "Eval": {"Config", "Models", "Data", "Scoring", "Train", "Root"},
    "Models": {"Data", "Scoring", "Root"},
    "Config": {"Models", "Root"},
    "Data": {"Scoring", "Root"},
    "Plots": {"Scoring", "Root"},
    "Scoring": {"Root"},
}
NEVER = {  # spelled out in the document; ALLOWED already excludes them, this names them in failures
    ("Scoring", "Train"),
    ("Scoring", "Models"),
    ("Scoring", "Face"),
    ("Scoring", "Cells"),
    ("Train", "Face"),
    ("Train", "Cells"),
    ("Train", "Plots"),
    ("Train", "Workflows"),
    ("Eval", "Face"),
    ("Eval", "Cells"),
    ("Eval", "Plots"),
    ("Eval", "Workflows"),
    ("Plots", "Train"),
    ("Plots", "Eval"),
    ("Plots", "Models"),
    ("Data", "Train"),
    ("Data", "Config"),
    ("Config", "Train"),
    ("Config", "Data"),
}
PART_OF = {module: part for part, modules in PARTS.items() for module in modules}


MODULES = {path.stem for path in PACKAGE.glob("*.py")}


def package_imports(source: str, module: str) -> set[str]:
    """The ``chartrvr_nb`` modules that ``source`` imports, anywhere in the file; a name imported from the
    package root that is not a module (``from . import UserError``) counts as importing ``__init__``.

    >>> sorted(package_imports("from . import env\\ndef f():\\n    from .data import x\\n    import chartrvr_nb.rewards", "m"))
    ['data', 'env', 'rewards']
    >>> sorted(package_imports("from . import UserError, runlock\\nfrom chartrvr_nb import UserError", "m"))
    ['__init__', 'runlock']
    """
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level == 1 or node.module == "chartrvr_nb" or (node.module or "").startswith("chartrvr_nb."):
                base = node.module or ""
                base = base.removeprefix("chartrvr_nb").lstrip(".") if node.level == 0 else base
                if base:
                    found.add(base.split(".")[0])
                else:  # from . import a, b: modules, or names the package root defines
                    found.update(alias.name if alias.name in MODULES else "__init__" for alias in node.names)
        elif isinstance(node, ast.Import):
            for alias in node.names:
                if alias.name.startswith("chartrvr_nb."):
                    found.add(alias.name.split(".")[1])
    found.discard(module)
    return found


def import_graph() -> dict[str, set[str]]:
    return {path.stem: package_imports(path.read_text(), path.stem) for path in sorted(PACKAGE.glob("*.py"))}


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle as a path ``[a, b, ..., a]``, or None.

    >>> find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}})
    ['a', 'b', 'c', 'a']
    >>> find_cycle({"a": {"b"}, "b": set()}) is None
    True
    """
    state: dict[str, str] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = "open"
        stack.append(node)
        for target in sorted(graph.get(node, ())):
            if state.get(target) == "open":
                return stack[stack.index(target) :] + [target]
            if target not in state:
                cycle = visit(target)
                if cycle:
                    return cycle
        state[node] = "done"
        stack.pop()
        return None

    for node in sorted(graph):
        if node not in state:
            cycle = visit(node)
            if cycle:
                return cycle
    return None


def test_every_module_has_a_part_and_a_docstring_naming_its_concern():
    graph = import_graph()
    unplaced = sorted(set(graph) - set(PART_OF))
    assert not unplaced, f"give these modules a part in PARTS (and in ARCHITECTURE.md's terms): {unplaced}"
    for module in graph:
        if module in ("__init__", "__main__"):
            continue
        docstring = ast.get_docstring(ast.parse((PACKAGE / f"{module}.py").read_text()))
        assert docstring and len(docstring.split()) >= 5, f"{module}.py needs a docstring that names its concern"


def test_the_package_root_imports_nothing_of_the_package():
    assert import_graph()["__init__"] == set()


def test_every_part_may_import_the_package_root():
    graph = import_graph()
    graph["answers"] = graph["answers"] | {"__init__"}  # Scoring, the part that may import least
    assert not arrow_violations(graph)


def test_no_import_cycles_inside_the_package():
    assert find_cycle(import_graph()) is None


def arrow_violations(graph: dict[str, set[str]]) -> list[str]:
    """Each import that crosses parts against the document, in words."""
    violations = []
    for module, targets in sorted(graph.items()):
        for target in sorted(targets):
            source_part, target_part = PART_OF[module], PART_OF.get(target)
            if target_part is None or source_part == target_part:
                continue
            if (source_part, target_part) in NEVER:
                violations.append(f"{module} -> {target}: {source_part} -> {target_part} is a 'never' arrow")
            elif target_part not in ALLOWED[source_part]:
                violations.append(f"{module} -> {target}: {source_part} -> {target_part} is not an allowed arrow")
    return violations


def test_imports_follow_the_allowed_arrows_and_never_the_forbidden_ones():
    violations = arrow_violations(import_graph())
    assert not violations, "\n".join(violations)


def test_benchmarks_use_neither_the_face_nor_the_cells():
    for path in sorted((ROOT / "bench").glob("*.py")):
        used = {PART_OF.get(module) for module in package_imports(path.read_text(), "")}
        assert not used & {"Face", "Cells"}, f"{path.name} imports from {used & {'Face', 'Cells'}}"


@pytest.mark.parametrize("edge", [("rewards", "train"), ("plots", "evaluate"), ("data", "presets"), ("tiny", "train")])
def test_the_check_catches_a_forbidden_arrow(edge):
    source, target = edge
    graph = import_graph()
    graph[source] = graph[source] | {target}
    assert [v for v in arrow_violations(graph) if v.startswith(f"{source} -> {target}:")]


def test_the_check_catches_a_cycle():
    graph = import_graph()
    graph["answers"] = graph["answers"] | {"inspection"}  # inspection already imports answers
    assert find_cycle(graph) is not None


def classes_defined_inside_functions(source: str) -> list[str]:
    """The names of classes defined inside a function body (ARCHITECTURE.md: none in the package).

    >>> classes_defined_inside_functions("class A:\\n    pass\\ndef f():\\n    class B:\\n        pass")
    ['B']
    """
    found = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
            found += [inner.name for inner in ast.walk(node) if isinstance(inner, ast.ClassDef)]
    return found


def test_no_class_is_defined_inside_a_function():
    offenders = {path.stem: classes_defined_inside_functions(path.read_text()) for path in sorted(PACKAGE.glob("*.py"))}
    assert {module: names for module, names in offenders.items() if names} == {}
