"""The type stubs declare exactly the public API with the runtime's parameters."""

import ast
import inspect
import pathlib

import nnfuse as nf

STUB = pathlib.Path(nf.__file__).with_name("__init__.pyi")


def _stub_functions():
    tree = ast.parse(STUB.read_text())
    functions = {}
    for node in tree.body:
        if isinstance(node, ast.FunctionDef):
            args = node.args
            functions[node.name] = ([a.arg for a in args.posonlyargs + args.args], [a.arg for a in args.kwonlyargs])
    return functions


def test_stubs_are_installed_with_the_package():
    assert STUB.exists()
    assert STUB.with_name("py.typed").exists()


def test_every_public_function_has_a_stub_with_the_same_parameters():
    stubs = _stub_functions()
    for name in nf.__all__:
        obj = getattr(nf, name)
        if not callable(obj) or inspect.isclass(obj):
            continue
        assert name in stubs, f"{name} is missing from {STUB.name}"
        params = inspect.signature(obj).parameters.values()
        positional = [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]
        keyword_only = [p.name for p in params if p.kind == p.KEYWORD_ONLY]
        assert stubs[name] == (positional, keyword_only), name
