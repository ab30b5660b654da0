"""The documentation against the code: its ``ctcf`` command lines parse, every option is documented, links resolve.

Command lines are checked with the CLI's own argparse parser (``CTCounterfactualLib.cli.build_parser``), so an
option that does not exist, a choice that is not offered or (in a complete command) a missing required argument
fails here. Command lines in fenced code blocks are complete commands a user copies; ``ctcf ...`` in inline code
(or any line with ``...``) is a fragment, where required arguments may be left out but every option given must
exist and take a valid value.
"""

from __future__ import annotations

import argparse
import io
import re
import shlex
import sys
import unicodedata
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path

import pytest

from CTCounterfactualLib.cli import build_parser

ROOT = Path(__file__).resolve().parents[2]
COMMAND_PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
LINK_PAGES = [
    *COMMAND_PAGES,
    *sorted((ROOT / "docs").glob("*/*.md")),
    ROOT / "CHANGELOG.md",
    ROOT / "bench" / "README.md",
    ROOT / "CTCounterfactual" / "README.md",
    ROOT / "Testing" / "Data" / "README.md",
    ROOT / "CTCounterfactualLib" / "resources" / "demo" / "README.md",
]
CLI_PAGE = ROOT / "docs" / "cli.md"

PLACEHOLDER = "DOC_PLACEHOLDER"  # stands for a required argument a fragment leaves out
ELLIPSIS = "..."
FENCE = re.compile(r"^\s*(```|~~~)")
# a shell command whose program is ctcf (any path to it), after optional env assignments, nohup, time or exec
COMMAND_START = re.compile(r"^\s*(?:\$\s+)?(?:(?:[A-Za-z_][A-Za-z0-9_]*=\S*|nohup|time|exec)\s+)*(?:\S*/)?ctcf(?:\s|$)")
INLINE_CODE = re.compile(r"(`+)(.+?)\1")
LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")
REQUIRED = re.compile(r"the following arguments are required: (.+?)(?: \(see [^()]*--help\))?$")


@dataclass
class CommandLine:
    """One ``ctcf`` command line found in a page."""

    page: Path
    line: int
    text: str
    complete: bool  # a fenced command (all required arguments present), not an inline fragment

    def where(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}: {self.text}"


@dataclass
class Page:
    """A Markdown page split into fenced blocks (with their first line) and the prose between them."""

    blocks: list[tuple[int, list[str]]]
    prose: list[tuple[int, str]]  # (line number, line) outside fences


def split_page(text: str) -> Page:
    blocks: list[tuple[int, list[str]]] = []
    prose: list[tuple[int, str]] = []
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        m = FENCE.match(line)
        if fence is None and m:
            fence = m.group(1)
            blocks.append((number + 1, []))
        elif fence is not None and m and m.group(1) == fence and not line.strip()[3:].strip():
            fence = None
        elif fence is not None:
            blocks[-1][1].append(line)
        else:
            prose.append((number, line))
    return Page(blocks, prose)


def _logical_lines(first: int, lines: list[str]):
    """(line number, text) with backslash continuations joined."""
    pending, start = "", first
    for number, line in enumerate(lines, start=first):
        if not pending:
            start = number
        if line.rstrip().endswith("\\"):
            pending += line.rstrip()[:-1] + " "
            continue
        yield start, pending + line
        pending = ""
    if pending:
        yield start, pending


@dataclass
class Paragraph:
    """A paragraph of prose with its lines joined by spaces (inline code and links may wrap), and where each
    line starts in the joined text."""

    text: str
    starts: list[tuple[int, int]]  # (offset in text, line number)

    def line_at(self, offset: int) -> int:
        return max(number for start, number in self.starts if start <= offset)


def _paragraphs(prose: list[tuple[int, str]]):
    """Every paragraph of the prose."""
    text, starts = "", []
    for number, line in prose + [(0, "")]:
        if line.strip():
            text += " " if text else ""
            starts.append((len(text), number))
            text += line.strip()
        elif text:
            yield Paragraph(text, starts)
            text, starts = "", []


def command_lines(page: Path, text: str | None = None) -> list[CommandLine]:
    """Every ``ctcf`` command line of a Markdown page: fenced ones complete, inline ones fragments."""
    parsed = split_page(page.read_text(encoding="utf-8") if text is None else text)
    found = []
    for first, lines in parsed.blocks:
        for number, line in _logical_lines(first, lines):
            if COMMAND_START.match(line):
                found.append(CommandLine(page, number, line.strip(), ELLIPSIS not in line))
    for paragraph in _paragraphs(parsed.prose):
        for m in INLINE_CODE.finditer(paragraph.text):
            if COMMAND_START.match(m.group(2)):
                found.append(CommandLine(page, paragraph.line_at(m.start()), m.group(2).strip(), False))
    return found


def argv_of(command: str) -> list[str]:
    """The arguments after ``ctcf``: shell words up to the first operator (``>``, ``&``, ``|``, ``;``), comments
    and ``...`` elisions dropped, env assignments and ``nohup``/``time``/``exec`` before the program skipped."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars=True)
    lexer.whitespace_split = True
    words = []
    for word in lexer:
        if word and all(c in "();<>|&" for c in word):
            break
        words.append(word)
    program = next(i for i, w in enumerate(words) if w == "ctcf" or w.endswith("/ctcf"))
    return [w for w in words[program + 1 :] if w != ELLIPSIS]


def parse_error(parser: argparse.ArgumentParser, argv: list[str]) -> str | None:
    """The parser's one-line error for ``argv``, or None when it parses (``--help``/``--version`` included)."""
    err = io.StringIO()
    try:
        with redirect_stderr(err), redirect_stdout(io.StringIO()):
            parser.parse_args(argv)
    except SystemExit as e:
        if e.code in (0, None):
            return None
        return err.getvalue().strip() or f"exit status {e.code}"
    return None


def command_problem(parser: argparse.ArgumentParser, cmd: CommandLine) -> str | None:
    """Why ``cmd`` does not parse with the current CLI, or None."""
    try:
        argv = argv_of(cmd.text)
    except ValueError as e:  # unbalanced quotes
        return f"not a shell command line: {e}"
    if not argv:
        return None  # the program named alone
    problem = parse_error(parser, argv)
    m = REQUIRED.search(problem or "")
    if problem is None or cmd.complete or not m:
        return problem
    # a fragment: fill in what it leaves out; a command group named without a subcommand is a mention of it
    extra: list[str] = []
    for name in m.group(1).split(", "):
        extra += [name.split("/")[0], PLACEHOLDER] if name.startswith("-") else [PLACEHOLDER]
    problem = parse_error(parser, argv + extra)
    if problem and f"invalid choice: {PLACEHOLDER!r}" in problem:
        return None
    return problem


def subcommand_path(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[str, ...]:
    """The (sub)command names ``argv`` selects, e.g. ``("models", "download")``."""
    path: list[str] = []
    for word in argv:
        groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
        if groups and word in groups[0].choices:
            path.append(word)
            parser = groups[0].choices[word]
    return tuple(path)


def leaf_parsers(parser: argparse.ArgumentParser, path: tuple[str, ...] = ()):
    """(path, parser) of every command that takes no further subcommand."""
    groups = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not groups:
        yield path, parser
    for group in groups:
        for name, sub in group.choices.items():
            yield from leaf_parsers(sub, (*path, name))


def all_option_strings(parser: argparse.ArgumentParser) -> set[str]:
    """Every long option of the parser and its subcommands."""
    found = {s for a in parser._actions for s in a.option_strings if s.startswith("--") and s != "--help"}
    for a in parser._actions:
        if isinstance(a, argparse._SubParsersAction):
            for sub in a.choices.values():
                found |= all_option_strings(sub)
    return found


def github_slug(heading: str) -> str:
    """The anchor GitHub gives a heading: the rendered text, lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # links render as their text
    text = text.replace("`", "").strip().lower()
    kept = "".join(c for c in text if c in " -_" or unicodedata.category(c)[0] in "LN")
    return kept.replace(" ", "-")


def anchors(page: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for _, line in split_page(page.read_text(encoding="utf-8")).prose:
        m = HEADING.match(line)
        if not m:
            continue
        slug = github_slug(m.group(2))
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        found.add(slug if n == 0 else f"{slug}-{n}")
    return found


def link_problems(page: Path) -> list[str]:
    """Relative links and images of a page that do not resolve to a file (and heading) of the repository."""
    problems = []
    for paragraph in _paragraphs(split_page(page.read_text(encoding="utf-8")).prose):
        text = INLINE_CODE.sub(lambda m: "`" * len(m.group(0)), paragraph.text)  # same length: offsets hold
        for m in LINK.finditer(text):
            target = m.group(1)
            if re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", target):
                continue  # https:, mailto:
            path, _, anchor = target.partition("#")
            resolved = (page.parent / path).resolve() if path else page.resolve()
            where = f"{page.relative_to(ROOT)}:{paragraph.line_at(m.start())}: {target}"
            if not resolved.is_relative_to(ROOT.resolve()) or not resolved.exists():
                problems.append(f"{where}: no such file")
            elif anchor and resolved.suffix == ".md" and anchor not in anchors(resolved):
                problems.append(f"{where}: no heading with that anchor in {resolved.name}")
    return problems


@pytest.fixture(scope="module")
def parser() -> argparse.ArgumentParser:
    return build_parser()


@pytest.fixture(scope="module")
def documented_commands() -> list[CommandLine]:
    return [cmd for page in COMMAND_PAGES for cmd in command_lines(page)]


def test_every_ctcf_command_line_in_the_docs_parses_with_the_current_cli(parser, documented_commands):
    problems = [f"{cmd.where()}\n    {p}" for cmd in documented_commands if (p := command_problem(parser, cmd))]
    assert problems == [], "\n".join(problems)
    assert any(cmd.complete for cmd in documented_commands if cmd.page.name == "README.md")


def test_every_command_has_a_documented_example(parser, documented_commands):
    shown = {subcommand_path(parser, argv_of(cmd.text)) for cmd in documented_commands}
    missing = [" ".join(path) for path, _ in leaf_parsers(parser) if path not in shown]
    assert missing == [], f"commands without an example in README.md or docs/: {missing}"


def test_every_option_of_the_cli_is_in_the_cli_page(parser):
    text = CLI_PAGE.read_text(encoding="utf-8")
    undocumented = sorted(o for o in all_option_strings(parser) if not re.search(re.escape(o) + r"(?![\w-])", text))
    assert undocumented == [], f"options missing from docs/cli.md: {undocumented}"


def test_every_relative_link_and_image_resolves():
    problems = [p for page in LINK_PAGES for p in link_problems(page)]
    assert problems == [], "\n".join(problems)


BROKEN_PAGE = """# A page

```bash
ctcf explain CT.nii.gz --out out/ --autoencoder demo-vqgan --classifier demo-effusion \\
    --target "pleural effusion" --no-such-option 3
ctcf explain CT.nii.gz --out out/ --autoencoder demo-vqgan --classifier demo-effusion \\
    --target "pleural effusion" --mode sideways
ctcf explain CT.nii.gz --out out/ --autoencoder demo-vqgan --classifier demo-effusion
ctcf models list > models.txt 2>&1   # a valid one, redirected
```

Fragments: `ctcf explain --classifier demo-effusion` is fine, `ctcf explain --mode sideways` is not,
and neither is `ctcf batch cohort.csv --out x --autoencoder a --classifier c --executor
slurm` (wrapped inside the paragraph); `ctcf models` names the group.
"""


def test_the_command_check_fails_on_broken_lines(parser, tmp_path):
    page = tmp_path / "broken.md"
    page.write_text(BROKEN_PAGE, encoding="utf-8")
    found = command_lines(page)
    problems = [command_problem(parser, cmd) for cmd in found]
    assert [cmd.complete for cmd in found] == [True, True, True, True, False, False, False, False]
    assert [cmd.line for cmd in found] == [4, 6, 8, 9, 12, 12, 13, 14]  # where each starts
    assert "unrecognized arguments: --no-such-option 3" in problems[0]
    assert "argument --mode: invalid choice: 'sideways'" in problems[1]
    assert "the following arguments are required: --target" in problems[2]
    assert problems[3] is None  # redirection and comment are not arguments
    assert problems[4] is None  # a fragment may leave out required arguments
    assert "argument --mode: invalid choice: 'sideways'" in problems[5]
    assert "argument --executor: invalid choice: 'slurm'" in problems[6]
    assert problems[7] is None  # `ctcf models` names the command group


def test_the_link_check_fails_on_a_missing_file_or_heading(tmp_path, monkeypatch):
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    (tmp_path / "docs").mkdir()
    (tmp_path / "docs" / "other.md").write_text("# Other page\n\n## `ctcf explain`: the options\n", encoding="utf-8")
    page = tmp_path / "docs" / "page.md"
    page.write_text(
        "# Title\n\n[fine](other.md#ctcf-explain-the-options) ![img](missing.png) [up](../README.md)\n"
        "[anchor](#title) [bad anchor](other.md#no-such-heading) [web](https://example.org/x.md)\n\n"
        "```\n[not a link](nowhere.md)\n```\n",
        encoding="utf-8",
    )
    assert link_problems(page) == [
        "docs/page.md:3: missing.png: no such file",
        "docs/page.md:3: ../README.md: no such file",
        "docs/page.md:4: other.md#no-such-heading: no heading with that anchor in other.md",
    ]


def _slow_tests() -> list[str]:
    """The node IDs the Makefile's SLOW_TESTS names (``$(T)`` expanded)."""
    text = (ROOT / "Makefile").read_text(encoding="utf-8")
    block = text[text.index("SLOW_TESTS :=") :].split("\n\n", 1)[0]
    return [w.replace("$(T)", "Testing/Python") for w in block.split() if w.startswith("$(T)/")]


def test_every_test_make_test_fast_leaves_out_exists():
    """A name in SLOW_TESTS that matches no test would be deselected silently, and test-fast would run it."""
    import subprocess

    names = _slow_tests()
    assert len(names) >= 10
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *names],
        cwd=ROOT, capture_output=True, text=True, encoding="utf-8", timeout=120,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-2000:]
    collected = [line for line in proc.stdout.splitlines() if "::" in line]
    for name in names:
        assert any(c == name or c.startswith(name + "[") for c in collected), name
