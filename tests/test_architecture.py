"""The layout's rules, checked on the code itself: no import cycle (function-level imports
included), no module over 700 lines, no function over 80 lines of code, the public face resolves,
CONTRIBUTING.md's map names every module once. ``lint-imports`` (run by .ci/run) checks the layers
themselves."""

import ast
import re
from pathlib import Path

import pytest

import tio2fiji

PACKAGE = Path(tio2fiji.__file__).resolve().parent
ROOT = PACKAGE.parent
MAX_LINES = 700
MAX_FUNCTION_LINES = 80


def _modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        yield ".".join(parts), path


def _resolve(module, path, node):
    """Absolute name of what an ``import``/``from ... import`` node imports (tio2fiji only)."""
    if isinstance(node, ast.Import):
        return [a.name for a in node.names if a.name.split(".")[0] == "tio2fiji"]
    if node.level == 0:
        base = node.module or ""
        if base.split(".")[0] != "tio2fiji":
            return []
    else:
        pkg = module.split(".") if path.name == "__init__.py" else module.split(".")[:-1]
        pkg = pkg[:len(pkg) - (node.level - 1)]
        base = ".".join(pkg + ([node.module] if node.module else []))
    names = []
    for alias in node.names:  # "from . import x" may name a submodule
        cand = f"{base}.{alias.name}"
        names.append(cand if cand in MODULES else base)
    return names


MODULES = dict(_modules())


def _graph():
    graph = {}
    for module, path in MODULES.items():
        deps = set()
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):  # function bodies too
            if isinstance(node, (ast.Import, ast.ImportFrom)):
                for name in _resolve(module, path, node):
                    while name and name not in MODULES:  # an attribute of a module
                        name = name.rpartition(".")[0]
                    if name and name != module:
                        deps.add(name)
        graph[module] = deps
    return graph


def _cycle(graph):
    """One import cycle as a list of modules, or None (depth-first search)."""
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for d in sorted(graph[m]):
            if state.get(d) == "open":
                return stack[stack.index(d):] + [d]
            if d not in state:
                found = visit(d)
                if found:
                    return found
        stack.pop()
        state[m] = "done"
        return None

    for m in sorted(graph):
        if m not in state:
            found = visit(m)
            if found:
                return found
    return None


def test_cycle_finder_finds_a_planted_cycle():
    assert _cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert _cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_function_level_imports_included():
    graph = _graph()
    assert len(graph) > 30 and graph["tio2fiji.run._batch"]  # the graph is really built
    assert _cycle(graph) is None, " -> ".join(_cycle(graph))


def test_no_module_over_700_lines():
    long = {m: n for m, p in MODULES.items()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > MAX_LINES}
    assert not long, long


def test_public_face_resolves():
    for name in tio2fiji._EXPORTS:
        obj = getattr(tio2fiji, name)
        assert obj is not None, name
        home = tio2fiji._EXPORTS[name]
        assert getattr(__import__(home, fromlist=[name]), name) is obj
    assert set(dir(tio2fiji)) >= set(tio2fiji.__all__)
    with pytest.raises(AttributeError):
        tio2fiji.no_such_function  # noqa: B018


def test_contributing_map_names_every_module_once():
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    block = text.split("<!-- module map -->")[1].split("<!-- end of module map -->")[0]
    listed = re.findall(r"`(tio2fiji(?:\.[A-Za-z_0-9]+)*)`", block)
    dupes = {m for m in listed if listed.count(m) > 1}
    assert not dupes, dupes
    assert set(listed) == set(MODULES), (sorted(set(MODULES) - set(listed)),
                                         sorted(set(listed) - set(MODULES)))


def _code_lines(fn, lines):
    """Lines of a function's body that are code: not blank, not comment-only, not its docstring.

    ``fn`` is an ``ast.FunctionDef``, ``lines`` its module's source lines. A nested function's
    lines count in the function around it too.
    """
    first = fn.body[0]
    doc = set()
    if (isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant)
            and isinstance(first.value.value, str)):
        doc = set(range(first.lineno, first.end_lineno + 1))
    code = [i for i in range(first.lineno, fn.end_lineno + 1)
            if i not in doc and lines[i - 1].strip() and not lines[i - 1].strip().startswith("#")]
    return len(code)


def _functions(source):
    return [n for n in ast.walk(ast.parse(source)) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))]


_PLANTED = '''
@decorator
def planted(x):
    """A docstring
    of three lines.
    """
    # a comment

    y = x + 1  # code with a comment
    return (y,
            x)


def outer():
    z = 1

    def inner():
        return z
    return inner
'''


def test_function_line_counter_counts_code_only():
    planted, outer, inner = _functions(_PLANTED)
    lines = _PLANTED.splitlines()
    assert (planted.name, outer.name, inner.name) == ("planted", "outer", "inner")
    assert _code_lines(planted, lines) == 3  # decorator, def line, docstring, comment, blank: not code
    assert _code_lines(outer, lines) == 4    # the nested function's lines count in outer too
    assert _code_lines(inner, lines) == 1


def test_no_function_over_80_code_lines():
    long = []
    for module, path in MODULES.items():
        source = path.read_text(encoding="utf-8")
        lines = source.splitlines()
        for fn in _functions(source):
            if (n := _code_lines(fn, lines)) > MAX_FUNCTION_LINES:
                long.append(f"{module}.{fn.name} (line {fn.lineno}): {n} lines of code")
    assert not long, (f"functions over {MAX_FUNCTION_LINES} lines of code (docstring, comments and "
                      "blank lines not counted): split them\n" + "\n".join(sorted(long)))


def test_at_most_8_flat_modules_and_tests_mirror_the_packages():
    """The folders show the flow: few modules outside packages, one test folder per package."""
    flat = sorted(p.stem for p in PACKAGE.glob("*.py") if p.name != "__init__.py")
    assert len(flat) <= 8, flat
    packages = {p.name for p in PACKAGE.iterdir() if (p / "__init__.py").exists()}
    tests = ROOT / "tests"
    folders = {p.name for p in tests.iterdir() if p.is_dir() and any(p.glob("test_*.py"))}
    assert folders <= packages | set(flat), sorted(folders - packages - set(flat))
    untested = packages - folders - {"macros", "data"}
    assert not untested, sorted(untested)
    names = [p.name for p in tests.rglob("test_*.py")]
    assert len(names) == len(set(names)), "test file names must be unique across the folders"


@pytest.mark.parametrize("package", ["tio2fiji", "tio2fiji.run"])
def test_type_stubs_declare_the_lazy_public_face(package):
    """``__init__.pyi`` lists what the lazy ``__getattr__`` serves, from the same modules."""
    module = __import__(package, fromlist=["_EXPORTS"])
    stub = Path(module.__file__).with_suffix(".pyi")
    declared = {}
    for node in ast.parse(stub.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom):
            for alias in node.names:
                declared[alias.asname or alias.name] = node.module
    expected = {name: home.rpartition(".")[2] if package == "tio2fiji" else home
                for name, home in module._EXPORTS.items()}
    assert declared == expected
