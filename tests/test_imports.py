"""No import cycle among paddleseg_ctx's modules.

Every module is parsed with ``ast`` (nothing is imported); an import
anywhere in it, at module level or inside a function, is an edge to the
paddleseg_ctx module it names.  ``from package import name`` is an edge to
``package.name`` when that is a module, else to ``package``.  A parent
package is not an edge: Python initialises it before any of its modules.
An import by a computed name (``importlib.import_module``, as in
``deploy/__init__.py``'s lazy names) is not seen.
"""
import ast
import os

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PACKAGE = 'paddleseg_ctx'


def module_files(root, package):
    """``{module name: file}`` of every ``.py`` file of ``package`` under ``root``."""
    found = {}
    for folder, dirs, files in os.walk(os.path.join(root, package)):
        dirs[:] = sorted(d for d in dirs if d != '__pycache__')
        for file in sorted(files):
            if not file.endswith('.py'):
                continue
            parts = os.path.relpath(os.path.join(folder, file), root)[:-3].split(os.sep)
            if parts[-1] == '__init__':
                parts = parts[:-1]
            found['.'.join(parts)] = os.path.join(folder, file)
    return found


def imported_names(module, is_package, tree):
    """Absolute names ``tree`` imports: ``(module, imported names or None)``."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = module.split('.')
                base = parts[:len(parts) - node.level + (1 if is_package else 0)]
                name = '.'.join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            yield name, [alias.name for alias in node.names]


def import_graph(root, package):
    """``{module: set of modules of the package it imports}``."""
    files = module_files(root, package)
    graph = {}
    for module, path in files.items():
        with open(path, encoding='utf-8') as f:
            tree = ast.parse(f.read(), path)
        is_package = path.endswith('__init__.py')
        edges = set()
        for name, members in imported_names(module, is_package, tree):
            if members is not None:
                submodules = {name + '.' + m for m in members} & set(files)
                edges |= submodules
                if len(submodules) < len(members) and name in files:
                    edges.add(name)
                continue
            while name and name not in files:  # `import a.b.c` of a package's module
                name = name.rpartition('.')[0]
            if name:
                edges.add(name)
        edges.discard(module)
        graph[module] = edges
    return graph


def cyclic_groups(graph):
    """The groups of modules that import each other, directly or not
    (strongly connected components of more than one module; Tarjan)."""
    index, low, stack, on_stack, groups = {}, {}, [], set(), []

    def visit(node):
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt not in index:
                visit(nxt)
                low[node] = min(low[node], low[nxt])
            elif nxt in on_stack:
                low[node] = min(low[node], index[nxt])
        if low[node] == index[node]:
            group = set()
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.add(member)
                if member == node:
                    break
            if len(group) > 1:
                groups.append(group)

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return groups


def find_cycles(graph):
    """One cycle ``[a, b, ..., a]`` through each group of :func:`cyclic_groups`."""
    return [_cycle_in(graph, group) for group in cyclic_groups(graph)]


def _cycle_in(graph, group):
    """A shortest path from the group's first module back to itself."""
    start = min(group)
    paths, seen = [[start]], {start}
    while paths:
        path = paths.pop(0)
        for nxt in sorted(graph[path[-1]] & group):
            if nxt == start:
                return path + [start]
            if nxt not in seen:
                seen.add(nxt)
                paths.append(path + [nxt])
    raise AssertionError('no cycle through {}'.format(start))  # cannot happen in a group


def test_package_has_no_import_cycle():
    graph = import_graph(ROOT, PACKAGE)
    assert len(graph) > 50 and 'paddleseg_ctx.weights' in graph  # the walk found the package
    groups = cyclic_groups(graph)
    assert not groups, 'import cycles:\n' + '\n'.join(
        '{}\n  (all modules of this cycle: {})'.format(
            ' -> '.join(_cycle_in(graph, group)), ', '.join(sorted(group)))
        for group in groups)


def reachable(graph, start):
    """The modules ``start`` imports, directly or not."""
    seen, todo = set(), [start]
    while todo:
        for nxt in graph[todo.pop()] - seen:
            seen.add(nxt)
            todo.append(nxt)
    return seen


def test_weights_import_no_command_zoo_or_evaluation_module():
    graph = import_graph(ROOT, PACKAGE)
    above = [m for m in reachable(graph, 'paddleseg_ctx.weights')
             if m.split('.')[1] in ('cli', 'evaluation', 'zoo', 'models', 'training')]
    assert not above, above
    assert 'paddleseg_ctx.weights.torch_file' in reachable(graph, 'paddleseg_ctx.weights')


def write_package(root, files):
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)


def test_cycle_through_a_function_level_import_is_found(tmp_path):
    write_package(tmp_path, {
        'pkg/__init__.py': '',
        'pkg/a.py': 'from pkg.sub import b\n',
        'pkg/sub/__init__.py': 'from .b import thing\n',
        'pkg/sub/b.py': 'def thing():\n    from ..c import other\n',
        'pkg/c.py': 'import pkg.a as a\nimport os\n',
        'pkg/d.py': 'from pkg import c\n',  # imports the cycle, is not in it
    })
    graph = import_graph(str(tmp_path), 'pkg')
    assert graph['pkg.sub'] == {'pkg.sub.b'}
    assert graph['pkg.sub.b'] == {'pkg.c'}
    assert graph['pkg.c'] == {'pkg.a'}
    assert find_cycles(graph) == [['pkg.a', 'pkg.sub.b', 'pkg.c', 'pkg.a']]


def test_names_imported_from_a_package_are_edges_to_it(tmp_path):
    write_package(tmp_path, {
        'pkg/__init__.py': 'from pkg import tools\n',
        'pkg/tools.py': 'from pkg import VERSION\n',
        'pkg/other.py': 'from pkg import tools\n',
    })
    graph = import_graph(str(tmp_path), 'pkg')
    assert graph == {'pkg': {'pkg.tools'}, 'pkg.tools': {'pkg'}, 'pkg.other': {'pkg.tools'}}
    assert find_cycles(graph) == [['pkg', 'pkg.tools', 'pkg']]
