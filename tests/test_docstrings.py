"""Every docstring example in lmcore runs, as documentation a reader can trust: each
module's examples are executed and must print what they show."""

import doctest
import importlib
import pkgutil

import pytest

import lmcore
from lmcore import backend

MODULES = sorted(m.name for m in pkgutil.walk_packages(lmcore.__path__, "lmcore."))
NEEDS_A_GPU = {"lmcore.cuda.ops"}  # imports CuPy at the top


@pytest.mark.parametrize("name", MODULES)
def test_docstring_examples_run(name):
    if name in NEEDS_A_GPU and not backend.gpu_available():
        pytest.skip("needs CuPy and a GPU")
    module = importlib.import_module(name)
    finder = doctest.DocTestFinder()
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    report = []
    for test in finder.find(module, name):
        runner.run(test, out=report.append)
    assert runner.failures == 0, "".join(report)


def test_most_modules_have_examples():
    with_examples = [
        name
        for name in MODULES
        if name not in NEEDS_A_GPU
        and any(t.examples for t in doctest.DocTestFinder().find(importlib.import_module(name)))
    ]
    assert len(with_examples) >= 0.8 * len(MODULES), sorted(set(MODULES) - set(with_examples))
