"""Loading ``MODULE:ATTR``: uvicorn's messages for what cannot be loaded, factories, and an application imported
once per process (a failure remembered)."""

from __future__ import annotations

import sys

import pytest

from pyswoole.hosting.loader import ImportedApp, LoadError, import_from_string, load_app


@pytest.fixture
def modules(tmp_path, monkeypatch):
    """Write modules into a folder on sys.path: ``modules(name, source)``; forgotten at teardown."""
    monkeypatch.syspath_prepend(str(tmp_path))
    written = []

    def write(name: str, source: str) -> None:
        (tmp_path / f"{name}.py").write_text(source)
        written.append(name)

    yield write
    for name in written:
        sys.modules.pop(name, None)


def test_an_attribute_path_is_followed(modules):
    modules("loader_ok", "class Holder:\n    app = 'the app'\n")

    assert import_from_string("loader_ok:Holder.app") == "the app"


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("loader_nowhere:app", 'Could not import module "loader_nowhere".'),
        ("loader_ok:nothing", 'Attribute "nothing" not found in module "loader_ok".'),
        ("loader_ok", 'Import string "loader_ok" must be in format "<module>:<attribute>".'),
        (":app", 'Import string ":app" must be in format'),
    ],
)
def test_what_cannot_be_imported_says_why(modules, spec, message):
    modules("loader_ok", "x = 1\n")

    with pytest.raises(LoadError) as error:
        import_from_string(spec)

    assert message in str(error.value)


def test_a_missing_dependency_of_the_module_is_not_taken_for_the_module_itself(modules):
    modules("loader_dependent", "import loader_missing_dependency\n")

    with pytest.raises(ModuleNotFoundError, match="loader_missing_dependency"):
        import_from_string("loader_dependent:app")


def test_a_factory_is_called_and_a_non_callable_is_refused(modules):
    modules("loader_factory", "def create():\n    return print\nnumber = 3\n")

    assert load_app("loader_factory:create", factory=True) is print
    with pytest.raises(LoadError, match="cannot be an application factory"):
        load_app("loader_factory:number", factory=True)
    with pytest.raises(LoadError, match=r"is not callable \(int\), so it is not an application"):
        load_app("loader_factory:number", factory=False)


def test_the_application_is_imported_once_and_a_failure_is_remembered(modules):
    modules("loader_counted", "import itertools\ncount = itertools.count()\ndef make():\n    next(count)\n"
                              "    return print\n")  # fmt: skip
    imported = ImportedApp("loader_counted:make", factory=True)
    assert imported.get() is imported.get() is print
    assert next(sys.modules["loader_counted"].count) == 1  # the factory ran once

    broken = ImportedApp("loader_nowhere:app")
    with pytest.raises(LoadError, match="Could not import"):
        broken.get()
    with pytest.raises(LoadError, match="could not be loaded in this worker"):
        broken.get()
