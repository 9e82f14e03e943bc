"""Every runnable block of the documentation runs and every link lands, so the docs cannot go stale.

A fenced ```python block runs in a fresh process and a ```bash block line by line, as a reader
would paste them; a page's blocks run in order in one temporary folder, so a block may use the
files an earlier one made. The line before a fence may hold a marker the reader never sees:
``<!-- docs-test: skip (the reason) -->`` for what cannot run here (a GPU, the internet, an
install), shown as the skip's reason, and ``<!-- docs-test: slow -->`` for a block that trains,
left out of the default run (``python -m pytest -m slow tests/test_docs.py`` runs them).
``<!-- docs-test: slow, optimised -->`` also compiles it with XLA's optimisations, as a reader's
run is, where its steps run long enough for them to pay (the README's try-out: 1.5x as long
without); the other blocks, mostly compiling, keep the suite's quick compilation. A python
block whose first line is a ``# NAME.py: ...`` comment is also saved as ``NAME.py`` in its page's
folder before any block runs, for the commands that run it by that name.
"""

import os
import re
import shlex
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.helpers import ROOT, run_python

PAGES = [ROOT / "README.md", ROOT / "RELIABILITY.md", *sorted((ROOT / "docs").glob("*.md"))]
README_MAX_LINES = 250
RUNNABLE = ("python", "bash")
NOT_RUN = ("text",)  # any other language would be neither run nor refused: spell it here first
MARKER = re.compile(r"<!-- docs-test: (?:(slow)(, optimised)?|skip \((.+)\)) -->")
FENCE = re.compile(r"^```(\S*)\s*$")
SCRIPT_NAME = re.compile(r"# (\w+\.py):")
TRAINS = re.compile(r"train\.py|\btrain\(|keras_resnet experiment|benchmarks\.")
TIMEOUT_S = 1800  # a slow block on a loaded 2-core machine
# The published CIFAR-10 checkpoints, where a copy sits beside the checkout (offline, the
# blocks that use them could only fail).
PUBLISHED = ROOT.parent / "shared" / "pretrained"
USES_PUBLISHED = re.compile(r'weights="cifar10"|\w:cifar10\b')


@dataclass(frozen=True)
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    language: str
    code: str
    slow: bool
    optimised: bool  # compiled with XLA's optimisations
    skip: str | None  # the reason, when the block cannot run here

    @property
    def name(self) -> str:
        return f"{self.page.relative_to(ROOT)}:L{self.line}"


def _blocks(page: Path) -> list[Block]:
    """The fenced blocks of ``page`` with the marker on the line before each fence."""
    lines = page.read_text().splitlines()
    blocks, index = [], 0
    while index < len(lines):
        fence = FENCE.match(lines[index])
        if not fence:
            index += 1
            continue
        end = next(i for i in range(index + 1, len(lines)) if lines[i].startswith("```"))
        before = lines[index - 1].strip() if index else ""
        marker = MARKER.fullmatch(before)
        if before.startswith("<!-- docs-test") and not marker:
            raise ValueError(f"{page.name}:{index}: unknown marker {before!r}")
        blocks.append(
            Block(
                page=page,
                line=index + 1,
                language=fence.group(1),
                code="\n".join(lines[index + 1 : end]) + "\n",
                slow=bool(marker and marker.group(1)),
                optimised=bool(marker and marker.group(2)),
                skip=marker.group(3) if marker else None,
            )
        )
        index = end + 1
    return blocks


BLOCKS = [block for page in PAGES for block in _blocks(page)]
RUNNABLE_BLOCKS = [block for block in BLOCKS if block.language in RUNNABLE]
TRY_OUT = [block for block in BLOCKS if "--synthetic --epochs 3" in block.code]  # the README's


def _param(block: Block):
    # A page's blocks share its folder, in order: with two test workers they stay on one.
    marks = [pytest.mark.xdist_group(block.page.name)]
    marks += [pytest.mark.slow] if block.slow else []
    if block.skip:
        marks.append(pytest.mark.skip(reason=block.skip))
    return pytest.param(block, id=block.name, marks=marks)


@pytest.fixture(scope="module")
def page_folders(tmp_path_factory) -> dict[Path, Path]:
    """One working folder per page, made on first use, holding the page's named scripts."""

    class Folders(dict):
        def __missing__(self, page: Path) -> Path:
            folder = tmp_path_factory.mktemp(page.stem)
            for block in _blocks(page):
                named = SCRIPT_NAME.match(block.code) if block.language == "python" else None
                if named:
                    (folder / named.group(1)).write_text(block.code)
            self[page] = folder
            return folder

    return Folders()


@pytest.fixture(scope="module")
def reader_env(tmp_path_factory) -> dict[str, str]:
    """A reader's shell: this checkout importable, JAX on the CPU, a Keras home of its own
    holding the published weights as a download would leave them, where they are at hand."""
    home = tmp_path_factory.mktemp("keras_home")
    if PUBLISHED.is_dir():
        (home / "models").mkdir()
        for checkpoint in PUBLISHED.glob("*.th"):
            (home / "models" / checkpoint.name).symlink_to(checkpoint)
    return {"KERAS_HOME": str(home), "JAX_PLATFORMS": "cpu", "TF_CPP_MIN_LOG_LEVEL": "3"}


def _commands(code: str) -> list[str]:
    """The commands of a bash block: continuation lines joined, comment lines left out."""
    joined = re.sub(r"\s*\\\n\s*", " ", code)
    return [
        line.strip() for line in joined.splitlines() if line.strip() and not line.startswith("#")
    ]


def _as_run_here(command: str) -> str:
    """``python`` is this interpreter and ``train.py`` the checkout's, from any folder."""
    command = re.sub(r"(?<![\w./-])python(?=\s)", shlex.quote(sys.executable), command)
    return re.sub(r"(?<![\w./-])train\.py\b", shlex.quote(str(ROOT / "train.py")), command)


@pytest.mark.parametrize("block", [_param(block) for block in RUNNABLE_BLOCKS])
def test_the_block_runs(block: Block, page_folders, reader_env, request):
    if getattr(request.config.option, "loadgroup", False):
        # Without it a page's blocks spread over workers and a block misses an earlier one's files.
        assert request.node.nodeid.endswith(f"@{block.page.name}"), (
            "pytest-xdist's --dist loadgroup is not grouping a page's blocks with this pytest: "
            "install the pytest that requirements-cpu.txt pins"
        )
    if USES_PUBLISHED.search(block.code) and not PUBLISHED.is_dir():
        pytest.skip(f"the published weights are not at hand here ({PUBLISHED})")
    folder = page_folders[block.page]
    if block.optimised:
        reader_env = {**reader_env, "JAX_DISABLE_MOST_OPTIMIZATIONS": "0"}
    if block.language == "python":
        result = run_python(
            block.code,
            env_updates=reader_env,
            remove=("KERAS_BACKEND",),
            cwd=folder,
            timeout=TIMEOUT_S,
        )
        assert result.returncode == 0, f"{block.name} failed:\n{result.stdout}\n{result.stderr}"
        return
    env = {k: v for k, v in os.environ.items() if k != "KERAS_BACKEND"}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env.update(reader_env)
    for command in _commands(block.code):
        result = subprocess.run(
            ["bash", "-c", _as_run_here(command)],
            env=env,
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=TIMEOUT_S,
        )
        assert result.returncode == 0, (
            f"{block.name}: `{command}` exited {result.returncode}:\n"
            f"{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
        )
    if block in TRY_OUT:  # it learns the generated task, as the README says (94-96 % measured)
        match = re.search(r"on the 512 test images: (\d+) %", result.stdout)
        assert match and int(match.group(1)) >= 90, result.stdout[-3000:]


def _without_comments(code: str) -> str:
    """``code`` without its ``#`` comments, which may quote a command without running it."""
    return re.sub(r"(^|\s)#.*$", "", code, flags=re.MULTILINE)


def test_every_block_is_runnable_text_or_marked():
    languages = {block.name: block.language for block in BLOCKS}
    unknown = {name: lang for name, lang in languages.items() if lang not in RUNNABLE + NOT_RUN}
    assert not unknown, f"blocks in a language this test neither runs nor knows: {unknown}"
    unmarked = [
        block.name
        for block in RUNNABLE_BLOCKS
        if TRAINS.search(_without_comments(block.code)) and not (block.slow or block.skip)
    ]
    assert not unmarked, f"blocks that train or benchmark, not marked slow or skip: {unmarked}"


def test_the_markers_are_read():
    by_name = {block.name: block for block in RUNNABLE_BLOCKS}
    setup = [block for block in by_name.values() if "requirements-cpu.txt" in block.code]
    assert len(setup) == 1 and setup[0].skip and setup[0].page.name == "README.md"
    assert len(TRY_OUT) == 1 and TRY_OUT[0].slow and TRY_OUT[0].optimised
    assert not any(block.optimised for block in BLOCKS if block is not TRY_OUT[0])
    assert any(not (block.slow or block.skip) for block in RUNNABLE_BLOCKS)
    assert _commands("python a.py \\\n    --b c  # note\n# a comment\n\nls\n") == [
        "python a.py --b c  # note",
        "ls",
    ]


def test_the_readme_is_a_front_page():
    lines = (ROOT / "README.md").read_text().splitlines()
    assert len(lines) <= README_MAX_LINES, f"README.md has {len(lines)} lines"


def _outside_code(text: str) -> str:
    """``text`` without fenced blocks and inline code, where brackets are not links."""
    text = re.sub(r"^```.*?^```", "", text, flags=re.DOTALL | re.MULTILINE)
    return re.sub(r"`[^`\n]*`", "", text)


def github_anchor(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation but - and _ dropped, spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "").strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(page: Path) -> set[str]:
    """Every heading anchor of ``page``, a repeated heading numbered as GitHub numbers it."""
    seen: dict[str, int] = {}
    found = set()
    text = re.sub(r"^```.*?^```", "", page.read_text(), flags=re.DOTALL | re.MULTILINE)
    for heading in re.findall(r"^#{1,6} (.+)$", text, flags=re.MULTILINE):
        anchor = github_anchor(heading)
        count = seen.get(anchor, 0)
        seen[anchor] = count + 1
        found.add(anchor if count == 0 else f"{anchor}-{count}")
    return found


def test_github_anchors():
    assert github_anchor("Fine-tuning") == "fine-tuning"
    assert github_anchor("The notes' experiments") == "the-notes-experiments"
    assert github_anchor("Training (`python train.py`)") == "training-python-trainpy"
    assert github_anchor("What a run leaves (`--output-dir`, `runs/<model>`)") == (
        "what-a-run-leaves---output-dir-runsmodel"
    )


@pytest.mark.parametrize("page", PAGES, ids=lambda page: str(page.relative_to(ROOT)))
def test_every_relative_link_lands(page: Path):
    broken = []
    for target in re.findall(r"\]\(([^)\s]+)\)", _outside_code(page.read_text())):
        if re.match(r"[a-z]+:", target):  # https:, mailto:: not ours to check offline
            continue
        path, _, anchor = target.partition("#")
        linked = (page.parent / path).resolve() if path else page
        if not linked.exists():
            broken.append(f"{target}: no file {linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.name}")
    assert not broken, f"{page.name}: " + "; ".join(broken)


def _table_flags(page: Path, heading: str) -> set[str]:
    """The flags named in the first column of the table under ``## heading`` of ``page``."""
    section = page.read_text().split(f"\n## {heading}\n", 1)[1].split("\n## ", 1)[0]
    rows = [line.split("|")[1] for line in section.splitlines() if line.startswith("| `")]
    return {flag for row in rows for flag in re.findall(r"--[a-z][a-z0-9-]*", row)}


def test_the_flag_table_lists_exactly_the_flags_of_train_py_help(capsys):
    from keras_resnet import cli

    with pytest.raises(SystemExit):
        cli.train_main(["--help"])
    shown = set(re.findall(r"(?<![\w-])--[a-z][a-z0-9-]*", capsys.readouterr().out)) - {"--help"}
    documented = _table_flags(ROOT / "docs" / "training.md", "Flags")
    assert documented == shown, (
        f"only in --help: {sorted(shown - documented)}; "
        f"only in the table: {sorted(documented - shown)}"
    )
