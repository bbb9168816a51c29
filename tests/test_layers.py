"""The import arrows of loadsvc/ run one way: cli -> service -> runner -> users -> recorder -> metrics."""

from __future__ import annotations

import ast
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "loadsvc"

# Top to bottom: a module imports only from its own layer or a lower one. Users sit above
# the recorder yet never import it: they depend on the sink protocols of users/base.py,
# which the recorder implements (FORBIDDEN below), so Prometheus stays out of them.
LAYERS: tuple[tuple[str, frozenset[str]], ...] = (
    ("cli", frozenset({"__main__", "cli", "demo", "localstack"})),
    (
        "service",
        frozenset(
            {"service", "oneshot", "compare", "render", "environment", "report", "progress", "web"}
        ),
    ),
    ("runner", frozenset({"runner", "sampler", "spawning"})),
    ("users", frozenset({"users", "loopmon"})),
    ("recorder", frozenset({"recorder", "recorder_sinks", "metricbatch"})),
    ("metrics", frozenset({"metrics", "selfmon"})),
    (
        "pure",
        frozenset(
            {
                "",
                "config",
                "runstats",
                "latency",
                "verdict",
                "lag",
                "collector",
                "sweeps",
                "gil",
                "live",
                "headline",
                "shapes",
                "tls",
                "logs",
                "target",
                "timeseries",
                "baseline",
                "files",
                "text",
                "templating",
                "feeders",
                "protocols",
                "shortfall",
                "window",
            }
        ),
    ),
)
# Whatever a layer may import by rank, these never: what imports Prometheus stays out of users.
FORBIDDEN: dict[str, frozenset[str]] = {
    "users": frozenset(
        {"loadsvc.recorder", "loadsvc.recorder_sinks", "loadsvc.metrics", "prometheus_client"}
    ),
    "loopmon": frozenset(
        {"loadsvc.recorder", "loadsvc.recorder_sinks", "loadsvc.metrics", "prometheus_client"}
    ),
    "runner": frozenset({"loadsvc.metrics", "prometheus_client"}),
}


# Arrows up that are allowed (none: the user kinds' builders live on the runtime side,
# loadsvc.users.kinds, so the config layer never imports a user class).
BUILD_TIME: frozenset[tuple[str, str]] = frozenset()


def _runtime_nodes(tree: ast.AST) -> list[ast.AST]:
    """Every node except those under ``if TYPE_CHECKING:`` (imports for types only)."""
    out: list[ast.AST] = []
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, ast.If) and ast.unparse(node.test) in (
            "TYPE_CHECKING",
            "typing.TYPE_CHECKING",
        ):
            stack.extend(node.orelse)
            continue
        out.append(node)
        stack.extend(ast.iter_child_nodes(node))
    return out


def _top(module: str) -> str:
    """``loadsvc.service.app`` -> ``service``; the package itself -> ``""``."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def _rank(top: str) -> int:
    for i, (_, members) in enumerate(LAYERS):
        if top in members:
            return i
    raise AssertionError(f"loadsvc.{top} is in no layer: add it to LAYERS")


def import_graph(package: Path = PACKAGE) -> dict[str, set[str]]:
    """Each module of the package and the modules it imports (absolute names, from ``ast``)."""
    graph: dict[str, set[str]] = {}
    for path in sorted(package.rglob("*.py")):
        parts = list(path.relative_to(package.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        name = ".".join(parts)
        found: set[str] = set()
        for node in _runtime_nodes(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                found.update(a.name for a in node.names)
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                found.add(node.module)
        graph[name] = found
    return graph


def arrows_back(graph: dict[str, set[str]]) -> list[str]:
    """Every import that goes up a layer or into what its layer must not see."""
    wrong = []
    for module, imports in graph.items():
        top = _top(module)
        for imported in sorted(imports):
            root = imported.split(".")[0]
            if (module, imported) in BUILD_TIME:
                continue
            if root == "loadsvc" and _rank(_top(imported)) < _rank(top):
                wrong.append(f"{module} -> {imported} (up a layer)")
            banned = FORBIDDEN.get(top, frozenset())
            if any(imported == b or imported.startswith(b + ".") for b in banned):
                wrong.append(f"{module} -> {imported} (forbidden)")
    return wrong


def test_imports_flow_down_the_layers() -> None:
    """No module of loadsvc/ imports from a higher layer, and users never see Prometheus."""
    graph = import_graph()
    assert "loadsvc.users.base" in graph and "loadsvc.recorder" in graph
    assert arrows_back(graph) == []


def test_an_arrow_back_is_reported() -> None:
    """The check names a user importing the recorder and the recorder importing the runner."""
    graph = {
        "loadsvc.users.ws": {"loadsvc.recorder", "loadsvc.users.base"},
        "loadsvc.recorder": {"loadsvc.runner", "loadsvc.metrics"},
        "loadsvc.runner": {"loadsvc.users", "prometheus_client"},
    }
    assert arrows_back(graph) == [
        "loadsvc.users.ws -> loadsvc.recorder (forbidden)",
        "loadsvc.recorder -> loadsvc.runner (up a layer)",
        "loadsvc.runner -> prometheus_client (forbidden)",
    ]
