"""The house's floor plan: imports only point down the layers of docs/architecture.md, with no circles (the tuner's
registration with PEFT aside), and library code never imports a command."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "peft_puma"

# Top to bottom; a module belongs to the first layer one of whose prefixes it starts with.
LAYERS: list[tuple[str, tuple[str, ...]]] = [
    (
        "commands",
        (
            "peft_puma.train",
            "peft_puma.evaluate",
            "peft_puma.embed",
            "peft_puma.search",
            "peft_puma.data.uml_mini.__main__",
            "peft_puma.standin.__main__",
            "peft_puma.backbones.timm_vit.__main__",
        ),
    ),
    ("stand-in pretraining", ("peft_puma.standin",)),
    ("training", ("peft_puma.training",)),
    ("inference", ("peft_puma.inference",)),
    ("run folder", ("peft_puma.runs",)),
    ("evaluation", ("peft_puma.evaluation",)),
    ("data and backbones", ("peft_puma.data", "peft_puma.backbones")),
    ("tuners and losses", ("peft_puma.tuners", "peft_puma.losses")),
    (
        "foundations",
        (
            "peft_puma.config",
            "peft_puma.command_line",
            "peft_puma.errors",
            "peft_puma.owned_paths",
            "peft_puma.output_place",
            "peft_puma.file_modes",
            "peft_puma.source_commit",
            "peft_puma.cpu_threads",
            "peft_puma.lazy_exports",
        ),
    ),
]
COMMANDS = LAYERS[0][1]
FACE = "peft_puma"  # the package's __init__: what `import peft_puma` gives users (registration, the config)
REGISTRATION = "peft_puma.tuners.puma"  # PEFT registration ties config, model and registration together


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def all_modules() -> dict[str, Path]:
    return {module_name(path): path for path in PACKAGE.rglob("*.py")}


def imports_of(name: str, path: Path, modules: dict[str, Path]) -> set[str]:
    """The peft_puma modules ``name`` imports, at module level or inside functions."""
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith(FACE)}
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if not target.startswith(FACE):
                continue
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                found.add(submodule if submodule in modules else target)
    return found - {name}


def layer_of(name: str) -> int | None:
    for index, (_, prefixes) in enumerate(LAYERS):
        if any(name == prefix or name.startswith(prefix + ".") for prefix in prefixes):
            return index
    return None


def graph() -> dict[str, set[str]]:
    modules = all_modules()
    return {name: imports_of(name, path, modules) for name, path in modules.items()}


def test_every_module_has_a_layer():
    assert [name for name in all_modules() if name != FACE and layer_of(name) is None] == []


def test_there_are_at_most_nine_layers():
    assert len(LAYERS) <= 9


def test_no_import_runs_upwards_or_sideways_into_another_package_of_its_layer():
    """Sideways imports are fine among the commands and among the foundations (errors under config keys)."""
    wrong = []
    for name, targets in graph().items():
        if name == FACE:
            continue
        for target in targets:
            if target == FACE or layer_of(target) is None:
                continue  # the package face: `from ... import __version__`
            above = layer_of(target) < layer_of(name)
            sideways = layer_of(target) == layer_of(name) and target.split(".")[1] != name.split(".")[1]
            if above or (sideways and layer_of(name) not in (0, len(LAYERS) - 1)):
                wrong.append(f"{name} -> {target}")
    assert wrong == []


def test_library_code_never_imports_a_command():
    wrong = [
        f"{name} -> {target}"
        for name, targets in graph().items()
        if layer_of(name) != 0
        for target in targets
        if any(target == command or target.startswith(command + ".") for command in COMMANDS)
    ]
    assert wrong == []


def test_there_is_no_import_circle_outside_the_tuners_registration():
    edges = {
        name: {t for t in targets if t != FACE and not (name.startswith(REGISTRATION) and t.startswith(REGISTRATION))}
        for name, targets in graph().items()
        if name != FACE
    }
    circles, state = [], {}

    def visit(node: str, trail: list[str]) -> None:
        state[node] = "open"
        for target in sorted(edges.get(node, ())):
            if state.get(target) == "open":
                circles.append(" -> ".join(trail[trail.index(target) :] + [target]))
            elif target not in state:
                visit(target, trail + [target])
        state[node] = "done"

    for node in sorted(edges):
        if node not in state:
            visit(node, [node])
    assert circles == []
