"""What the modules under mmpcm/ and the tools may import.

The product (every module under ``mmpcm/`` outside ``mmpcm/testing/``, and
the tools under ``tools/`` but the developer tool ``make_smoke_data.py``)
never imports :mod:`mmpcm.testing`, and no module under ``mmpcm/`` imports
the repository's ``tests``, ``benchmarks`` or ``projects`` (nor the toy
world's package ``mmpcm_toyworld``, which lives in ``projects/``). The files
are read with :mod:`ast`, not imported.
"""
import ast
import os
import os.path as osp
from typing import Iterator, List, Tuple

import pytest

REPO_DIR = osp.dirname(osp.dirname(osp.abspath(__file__)))
PACKAGE_DIR = osp.join(REPO_DIR, 'mmpcm')
TOOLS_DIR = osp.join(REPO_DIR, 'tools')
DEVELOPER_TOOLS = ('tools/data/make_smoke_data.py', )
TESTING = 'mmpcm.testing'
OUTSIDE = ('tests', 'benchmarks', 'projects', 'mmpcm_toyworld')
IMPORT_CALLS = ('import_module', '__import__')


def _py_files(top: str) -> List[str]:
    """Every .py file under ``top``, sorted."""
    found = []
    for folder, dirs, files in os.walk(top):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        found += [osp.join(folder, n) for n in sorted(files)
                  if n.endswith('.py')]
    return found


def _modules() -> List[Tuple[str, str]]:
    """``(dotted module name, file)`` of every .py file under mmpcm/."""
    found = []
    for path in _py_files(PACKAGE_DIR):
        parts = osp.relpath(path, REPO_DIR)[:-len('.py')].split(os.sep)
        if parts[-1] == '__init__':
            parts = parts[:-1]
        found.append(('.'.join(parts), path))
    return found


def _package_of(module: str, path: str) -> str:
    """The package a module's relative imports start from."""
    is_package = osp.basename(path) == '__init__.py'
    return module if is_package else module.rpartition('.')[0]


def _imported(module: str, path: str) -> Iterator[Tuple[int, str]]:
    """``(line, absolute dotted name)`` of everything a module imports.

    ``from a import b`` yields both ``a`` and ``a.b`` (``b`` may be a
    module); a call to ``importlib.import_module`` or ``__import__`` with a
    constant name counts as an import too.
    """
    with open(path, encoding='utf-8') as f:
        tree = ast.parse(f.read(), filename=path)
    package = _package_of(module, path)
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ''
            if node.level:
                anchor = package.split('.')
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = '.'.join(anchor + ([base] if base else []))
            yield node.lineno, base
            for alias in node.names:
                yield node.lineno, f'{base}.{alias.name}'
        elif (isinstance(node, ast.Call) and node.args
              and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)):
            func = node.func
            name = getattr(func, 'attr', getattr(func, 'id', None))
            if name in IMPORT_CALLS and not node.args[0].value.startswith(
                    '.'):
                yield node.lineno, node.args[0].value


def _is_under(name: str, top: str) -> bool:
    return name == top or name.startswith(top + '.')


MODULES = _modules()
TOOLS = [osp.relpath(p, REPO_DIR).replace(os.sep, '/')
         for p in _py_files(TOOLS_DIR)]


def test_the_walk_finds_the_package_and_the_tools():
    names = [m for m, _ in MODULES]
    assert 'mmpcm' in names and 'mmpcm.utils.fileio' in names
    assert 'mmpcm.testing' in names
    assert 'tools/train.py' in TOOLS and DEVELOPER_TOOLS[0] in TOOLS


@pytest.mark.parametrize('module,path', MODULES, ids=[m for m, _ in MODULES])
def test_module_imports(module, path):
    rel = osp.relpath(path, REPO_DIR)
    product = not _is_under(module, TESTING)
    wrong = {}  # line -> message, the first wrong name of each statement
    for line, name in _imported(module, path):
        if line in wrong:
            continue
        if product and _is_under(name, TESTING):
            wrong[line] = (f'{rel}:{line}: imports {name} (mmpcm.testing is '
                           'for tests, benchmarks and developer tools only)')
        elif any(_is_under(name, top) for top in OUTSIDE):
            wrong[line] = (f'{rel}:{line}: imports {name} (code outside the '
                           'mmpcm package)')
    assert not wrong, '\n'.join(wrong[k] for k in sorted(wrong))


@pytest.mark.parametrize('rel', TOOLS)
def test_tool_imports(rel):
    if rel in DEVELOPER_TOOLS:
        pytest.skip('a developer tool may use mmpcm.testing')
    # a tool is a script: its imports are absolute
    lines = sorted({line for line, name in _imported(
        'tool', osp.join(REPO_DIR, rel)) if _is_under(name, TESTING)})
    assert not lines, '\n'.join(
        f'{rel}:{line}: imports mmpcm.testing (for tests, benchmarks and '
        'developer tools only)' for line in lines)


def test_the_check_sees_relative_imports(tmp_path):
    path = tmp_path / 'example.py'
    path.write_text('from ..testing import models\n'
                    'from . import sibling\n'
                    'import importlib\n'
                    "importlib.import_module('benchmarks.common')\n")
    found = [name for _, name in _imported('mmpcm.datasets.example',
                                           str(path))]
    assert 'mmpcm.testing.models' in found
    assert 'mmpcm.datasets.sibling' in found
    assert 'benchmarks.common' in found
