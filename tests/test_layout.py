"""The package's layout keeps its rules (docs/architecture.rst, CONTRIBUTING.rst).

The import directions between the rooms are import-linter's contracts
(pyproject.toml, run by scripts/test.sh); these tests hold the rest: module
sizes, the package root, function-local imports, where locking SQL and writes
of a message's state live, that one module makes what a delivery run needs,
and that no import circle exists.
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

import mailer

PACKAGE = Path(mailer.__file__).parent
MAX_LINES = 500
MAX_ROOT_MODULES = 15
LOCKING_SQL = re.compile(
    r"FOR UPDATE|SKIP LOCKED|NOWAIT|GET_LOCK|RELEASE_LOCK|BEGIN IMMEDIATE|BEGIN EXCLUSIVE|"
    r"LOCK TABLE|pg_advisory|pg_try_advisory"
)
MESSAGE_TABLE_WRITE = re.compile(r"\b(UPDATE|DELETE FROM|INSERT INTO)\b[^;]*mailer_message", re.I)
WRITES = {"update", "bulk_update", "save", "delete", "bulk_create", "select_for_update"}
MESSAGE_ROWS = re.compile(r"\bMessage(Log)?\b|\bmessages?\b|\brows?\b|\bqueue\b|\bqueryset\b")
# Modules that may ask which database they are on, outside mailer/queue/sql/, and why.
VENDOR_CHECKS_ALLOWED = {
    "mailer.checks.settings": "mailer.W001 warns that SQLite lets one writer in at a "
    "time: a property of the database the user chose, said in its own words, not SQL",
}
# What the delivery connections of a run (or a worker) share, and their engines: made
# by mailer.runner.send's Delivery, the one way a delivery runs. The delivery room may make
# an engine's own when it is given none; ``given or Piece()`` is such a default anywhere.
RUN_PIECES = {
    "Engine",
    "Recorder",
    "Gate",
    "Pool",
    "Tally",
    "Outage",
    "LeaseKeeper",
    "RateLimiter",
    "reclaim_dead",
    "reclaim_expired",
}
ONE_DELIVERY_PATH = "mailer.runner.send"


@dataclass(frozen=True)
class Module:
    name: str
    path: Path
    tree: ast.Module
    lines: list[str]

    @property
    def package(self) -> str:
        return self.name if self.path.name == "__init__.py" else self.name.rpartition(".")[0]

    @property
    def in_sql(self) -> bool:
        return self.name == "mailer.queue.sql" or self.name.startswith("mailer.queue.sql.")

    @property
    def in_queue(self) -> bool:
        return self.name == "mailer.queue" or self.name.startswith("mailer.queue.")


def modules() -> list[Module]:
    """Every module of the package but the migrations (written once, never imported)."""
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        relative = path.relative_to(PACKAGE.parent).with_suffix("")
        if "migrations" in relative.parts:
            continue
        parts = list(relative.parts)
        if parts[-1] == "__init__":
            parts.pop()
        text = path.read_text()
        found.append(Module(".".join(parts), path, ast.parse(text), text.splitlines()))
    return found


MODULES = modules()
NAMES = {module.name for module in MODULES}


def imports(module: Module) -> Iterator[tuple[ast.Import | ast.ImportFrom, set[str], bool]]:
    """Each import statement of ``module`` outside ``if TYPE_CHECKING:``, the package's
    modules it imports, and whether it is function-local."""

    def walk(node: ast.AST, local: bool) -> Iterator[tuple[ast.AST, bool]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and "TYPE_CHECKING" in ast.unparse(child.test):
                yield from ((n, local) for n in child.orelse)
                continue
            inner = local or isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef)
            yield child, inner
            yield from walk(child, inner)

    for node, local in walk(module.tree, False):
        if isinstance(node, ast.Import):
            targets = {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module.package.split(".")
                base = ".".join(package[: len(package) - node.level + 1] + ([base] if base else []))
            targets = {
                f"{base}.{a.name}" if f"{base}.{a.name}" in NAMES else base for a in node.names
            }
        else:
            continue
        ours = {target for target in targets if target in NAMES}
        if ours:
            yield node, ours, local


def strings(module: Module) -> Iterator[ast.Constant]:
    """The string constants of ``module`` that are not docstrings."""
    docstrings = set()
    for node in ast.walk(module.tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and isinstance(body[0], ast.Expr):
            docstrings.add(id(body[0].value))
    for node in ast.walk(module.tree):
        is_text = isinstance(node, ast.Constant) and isinstance(node.value, str)
        if is_text and id(node) not in docstrings:
            yield node


def test_no_module_is_over_500_lines() -> None:
    long = {m.name: len(m.lines) for m in MODULES if len(m.lines) > MAX_LINES}
    assert not long, f"split these modules by concern: {long}"


def test_the_package_root_holds_at_most_15_modules() -> None:
    root = sorted(path.name for path in PACKAGE.glob("*.py"))
    assert len(root) <= MAX_ROOT_MODULES, f"{len(root)} modules in mailer/: {root}"


def test_every_function_local_import_of_ours_says_why() -> None:
    """Only Django's app loading (or an optional dependency) is a reason, and it is written
    on the import or on the comment line right above the imports it covers."""
    silent = []
    for module in MODULES:
        for node, _targets, local in imports(module):
            if not local:
                continue
            span = module.lines[node.lineno - 1 : node.end_lineno]
            above = node.lineno - 2
            while above >= 0 and re.match(r"\s*(from |import |$)", module.lines[above]):
                above -= 1  # the comment above a run of imports covers the run
            commented = any("#" in line for line in span) or (
                above >= 0 and module.lines[above].strip().startswith("#")
            )
            if not commented:
                silent.append(f"{module.name}:{node.lineno}")
    assert not silent, f"function-local imports without a reason: {silent}"


def test_locking_sql_lives_in_the_queue() -> None:
    outside = [
        f"{module.name}:{node.lineno}"
        for module in MODULES
        if not module.in_queue
        for node in strings(module)
        if LOCKING_SQL.search(node.value) or MESSAGE_TABLE_WRITE.search(node.value)
    ]
    assert not outside, f"row-locking or message-table SQL outside mailer/queue/: {outside}"


def test_only_the_queue_writes_a_messages_state() -> None:
    """Outside mailer/queue/, no update, save, delete or lock is called on messages,
    their log rows or a queryset of them."""
    writes = []
    for module in MODULES:
        if module.in_queue:
            continue
        for node in ast.walk(module.tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            receiver = ast.unparse(node.func.value)
            if receiver.endswith("__dict__"):
                continue  # an object's attributes in memory, not a row
            if node.func.attr in WRITES and MESSAGE_ROWS.search(receiver):
                writes.append(f"{module.name}:{node.lineno}: {ast.unparse(node.func)}")
    assert not writes, f"message state written outside the queue: {writes}"


def vendor_checks(module: Module) -> list[str]:
    """Where ``module`` compares a database's vendor (``connection.vendor == ...``,
    ``vendor in (...)``)."""
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Compare):
            continue
        operands = [node.left, *node.comparators]
        if any(
            (isinstance(o, ast.Attribute) and o.attr == "vendor")
            or (isinstance(o, ast.Name) and o.id == "vendor")
            for o in operands
        ):
            found.append(f"{module.name}:{node.lineno}: {ast.unparse(node)}")
    return found


def test_only_the_sql_modules_ask_which_database_they_are_on() -> None:
    """Each database's statements are in its module of mailer/queue/sql/; everyone else
    calls ``mailer.queue.sql.of(using)``'s functions instead of branching on the vendor."""
    checks = [
        check
        for module in MODULES
        if not module.in_sql and module.name not in VENDOR_CHECKS_ALLOWED
        for check in vendor_checks(module)
    ]
    assert not checks, f"vendor branches outside mailer/queue/sql/: {checks}"


def test_the_vendor_check_finds_vendor_branches() -> None:
    source = (
        "if connection.vendor == 'postgresql': pass\n"
        "if 'mysql' != connections[db].vendor: pass\n"
        "postgres = vendor in ('postgresql',)\n"
        "name = connection.vendor\n"
    )
    module = Module("mailer.example", PACKAGE / "example.py", ast.parse(source), [])
    assert [check.split(":")[1] for check in vendor_checks(module)] == ["1", "2", "3"]
    assert all(vendor_checks(m) for m in MODULES if m.name in VENDOR_CHECKS_ALLOWED)


def run_pieces_made(module: Module) -> list[tuple[int, str]]:
    """Where ``module`` makes one of ``RUN_PIECES`` (``Piece(...)``, ``x.Piece(...)``,
    ``Piece.factory(...)``), and which, but as the default of one it was not given."""
    defaults = {
        id(value)
        for node in ast.walk(module.tree)
        if isinstance(node, ast.BoolOp) and isinstance(node.op, ast.Or)
        for value in node.values[1:]
    }
    found = []
    for node in ast.walk(module.tree):
        if not isinstance(node, ast.Call) or id(node) in defaults:
            continue
        func = node.func
        called = (func, getattr(func, "value", None))  # Piece(), x.Piece(), Piece.factory()
        names = {getattr(f, a, None) for f in called for a in ("id", "attr")}
        found += [(node.lineno, piece) for piece in sorted(RUN_PIECES & names)]
    return found


def test_one_module_makes_what_a_delivery_run_needs() -> None:
    """send_all, send_mail, the Tasks drain and each runmailer slot run through one
    ``Delivery``: no other module sets up engines, recorders, leases or the rate limit."""
    elsewhere = [
        f"{module.name}:{line}: {piece}"
        for module in MODULES
        if module.name != ONE_DELIVERY_PATH and not module.name.startswith("mailer.delivery.")
        for line, piece in run_pieces_made(module)
    ]
    assert not elsewhere, f"a second way a delivery runs: {elsewhere}"
    (one_path,) = (m for m in MODULES if m.name == ONE_DELIVERY_PATH)
    assert {piece for _, piece in run_pieces_made(one_path)} == RUN_PIECES


def test_the_one_path_check_finds_a_second_path() -> None:
    source = (
        "engine = Engine(owner, queryset=queue)\n"
        "keeper = leases.LeaseKeeper(me.id)\n"
        "limiter = RateLimiter.from_settings(stop, using)\n"
        "outage = given or Outage(logger)\n"
        "Message.objects.using(using).reclaim_expired()\n"
        "engine.run()\n"
    )
    module = Module("mailer.runner.worker", PACKAGE / "runner/worker.py", ast.parse(source), [])
    assert run_pieces_made(module) == [
        (1, "Engine"),
        (2, "LeaseKeeper"),
        (3, "RateLimiter"),
        (5, "reclaim_expired"),
    ]


def test_no_import_circle() -> None:
    """Imports at any level, function-local ones included: none leads back to itself."""
    graph = {module.name: set() for module in MODULES}
    for module in MODULES:
        for _node, targets, _local in imports(module):
            graph[module.name] |= targets - {module.name}
    circle = find_circle(graph)
    assert circle is None, " -> ".join(circle or [])


def find_circle(graph: dict[str, set[str]]) -> list[str] | None:
    """A path that returns to its start, or None (depth-first, colouring nodes)."""
    done: set[str] = set()
    path: list[str] = []
    on_path: set[str] = set()

    def visit(name: str) -> list[str] | None:
        path.append(name)
        on_path.add(name)
        for target in sorted(graph.get(name, ())):
            if target in on_path:
                return [*path[path.index(target) :], target]
            if target not in done:
                found = visit(target)
                if found:
                    return found
        on_path.discard(path.pop())
        done.add(name)
        return None

    for name in sorted(graph):
        if name not in done:
            found = visit(name)
            if found:
                return found
    return None


@pytest.mark.parametrize(
    ("graph", "circle"),
    [
        ({"a": {"b"}, "b": {"c"}, "c": set()}, None),
        ({"a": {"b"}, "b": {"c"}, "c": {"a"}}, ["a", "b", "c", "a"]),
    ],
)
def test_the_circle_finder_finds_circles(
    graph: dict[str, set[str]], circle: list[str] | None
) -> None:
    assert find_circle(graph) == circle


def test_the_checks_see_the_whole_package() -> None:
    """The walk reads every room, so a rule that passes is not passing on nothing."""
    rooms = {name.split(".")[1] for name in NAMES if name.count(".") >= 1}
    assert {"queue", "delivery", "runner", "message", "admin", "management"} <= rooms
    assert sum(1 for m in MODULES for _ in imports(m)) > 100
