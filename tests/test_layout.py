"""The tree shows the architecture: the library never imports the trainer or the CLI, the run
folder's file names live in one module, and the CLI hides only the errors a user can cause."""

import ast
from pathlib import Path

import pytest

from keras_resnet import cli
from keras_resnet.trainer import run_folder

PACKAGE = Path(__file__).resolve().parent.parent / "keras_resnet"
APPLICATION = (
    "keras_resnet.trainer",
    "keras_resnet.cli",
    "keras_resnet.commands",
    "keras_resnet.__main__",
)


def _modules(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.py"))


def _imported_modules(path: Path) -> set[str]:
    """Every module ``path`` imports, at the top or inside a function."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def _library_modules() -> list[Path]:
    return [
        path
        for path in _modules(PACKAGE)
        if "trainer" not in path.relative_to(PACKAGE).parts
        and path.name not in ("cli.py", "commands.py", "__main__.py")
    ]


def test_the_library_is_most_of_the_package_and_the_trainer_a_subpackage():
    library = {path.stem for path in _library_modules()}
    assert {"blocks", "models", "augment", "optimizers", "callbacks", "errors"} <= library
    trainer = {
        path.parent.name if path.stem == "__init__" else path.stem
        for path in _modules(PACKAGE / "trainer")
    }  # a subpackage (data/) counts by its folder's name
    assert {"config", "run_folder", "data", "fit", "evaluation", "experiments"} <= trainer


@pytest.mark.parametrize("path", _library_modules(), ids=lambda path: path.name)
def test_the_library_imports_nothing_from_the_trainer_or_the_cli(path):
    upward = sorted(name for name in _imported_modules(path) if name.startswith(APPLICATION))
    assert not upward, f"{path.name} imports {upward}"


def _string_constants(path: Path) -> list[str]:
    """String literals of ``path``, docstrings left out."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(node.body[0].value)
        for node in ast.walk(tree)
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef)
        and node.body
        and isinstance(node.body[0], ast.Expr)
        and isinstance(node.body[0].value, ast.Constant)
    }
    return [
        node.value
        for node in ast.walk(tree)
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and id(node) not in docstrings
    ]


RUN_FILES = [
    run_folder.CONFIG,
    run_folder.STATE,
    run_folder.METRICS,
    run_folder.HISTORY,
    run_folder.MODEL,
    run_folder.BEST,
    run_folder.CURVES,
    run_folder.CONFUSION,
    run_folder.DECODED,
]


# saving.py reads the .keras archive's own config.json member, not a run file.
ARCHIVE_MEMBERS = {"saving.py": {run_folder.CONFIG}}


@pytest.mark.parametrize(
    "path",
    [p for p in _modules(PACKAGE) if p.name != "run_folder.py"],
    ids=lambda path: str(path.relative_to(PACKAGE)),
)
def test_no_module_but_the_run_folder_spells_a_run_file_name(path):
    spelled = sorted(
        {name for text in _string_constants(path) for name in RUN_FILES if name in text}
        - ARCHIVE_MEMBERS.get(path.name, set())
    )
    assert not spelled, f"{path.name} spells {spelled}; ask RunFolder instead"


def test_an_unexpected_error_keeps_its_traceback(monkeypatch):
    def broken(*args, **kwargs):
        raise RuntimeError("a bug, not a user's mistake")

    monkeypatch.setattr("keras_resnet.trainer.fit.train", broken)
    with pytest.raises(RuntimeError, match="a bug"):
        cli.train_main(["--synthetic", "--model", "resnet8"])


def test_a_user_error_is_one_line_with_its_exit_code(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_info:
        cli.train_main(["--lr=-1", "--synthetic", "--output-dir", str(tmp_path / "run")])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err == (
        "error: --lr must be a positive number from 1.18e-38 to 3.4e+38 (float32), got -1.0\n"
    )
