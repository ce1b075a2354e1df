"""The command reference (docs/commands.md) and the README keep up with every command's --help."""

import difflib
import re
import subprocess
import sys

import pytest
from conftest import REPO, invoke

from dcue_cli import docs

REFERENCE = REPO / "docs" / "commands.md"
REGENERATE = "regenerate it: python -m dcue_cli.docs > docs/commands.md"


def _sections(text: str) -> dict:
    """'dcue NAME' -> that command's part of the reference."""
    parts = re.split(r"^## (dcue(?: [a-z]+)?)$", text, flags=re.MULTILINE)
    return dict(zip(parts[1::2], parts[2::2]))


def _options_in_help(help_text: str) -> list:
    """Every option string (-o, --output, --no-amp ...) of the Options: part of a --help."""
    options = help_text.split("\nOptions:\n", 1)[1]
    found = []
    for line in options.splitlines():
        match = re.match(r"^  (-[^\s,]+(?:, -[^\s,]+)*(?: / -[^\s,]+)?)", line)
        if match:
            found += re.findall(r"-[\w-]+", match.group(1))
    return found


def test_reference_is_up_to_date():
    expected = docs.render()
    actual = REFERENCE.read_text(encoding="utf-8") if REFERENCE.exists() else ""
    if actual != expected:
        diff = "".join(list(difflib.unified_diff(actual.splitlines(True), expected.splitlines(True),
                                                 "docs/commands.md", "python -m dcue_cli.docs"))[:60])
        pytest.fail(f"docs/commands.md differs from the commands' --help: {REGENERATE}\n{diff}")


def test_reference_names_every_command_and_every_option_of_its_help():
    sections = _sections(REFERENCE.read_text(encoding="utf-8"))
    names = docs.command_names()
    assert {"synth", "subset", "melspec", "wmf", "score", "autotag"} <= set(names)
    assert set(sections) == {"dcue"} | {f"dcue {n}" for n in names}, REGENERATE
    for name in [None] + names:
        args = [name, "--help"] if name else ["--help"]
        title = f"dcue {name}" if name else "dcue"
        options = _options_in_help(invoke(args).stdout)
        assert "--help" in options
        for option in options:
            assert f"`{option}" in sections[title] or f" {option}" in sections[title], (
                f"docs/commands.md does not name {option} of `{title}`: {REGENERATE}")


def test_help_blocks_become_code_and_markup_is_escaped():
    lines = docs._help_markdown("Do it.\n\n  A <TAB> b | c * d _e_ user_id.\n\n  \b\n  Example:\n    dcue x <y>\n")
    assert lines == ["Do it.", "", r"A &lt;TAB> b \| c \* d \_e\_ user_id.", "", "**Example**:", "",
                     "```", "dcue x <y>", "```", ""]
    assert docs._escape("a `x|<y>` b") == "a `x|<y>` b"  # code spans stay as they are


def test_readme_mentions_every_command_and_links_the_reference():
    readme = (REPO / "README.md").read_text(encoding="utf-8")
    missing = [name for name in docs.command_names() if f"dcue {name}" not in readme]
    problems = [(f"README.md does not mention {', '.join(f'`dcue {n}`' for n in missing)}: add each to the tour "
                f"of the subcommands (a section '### `dcue NAME`: what it does' with one real example)")] if missing else []
    if "docs/commands.md" not in readme:
        problems.append("README.md does not link the command reference: add a line such as 'Every option of "
                        "every command: [docs/commands.md](docs/commands.md) (generated from --help).'")
    assert not problems, "\n".join(problems)


def test_docs_imports_nothing_heavy():
    code = ("import sys; from dcue_cli.docs import render; render();"
            "print([m for m in ('torch', 'librosa', 'implicit', 'sklearn', 'pandas', 'h5py', 'matplotlib')"
            " if m in sys.modules])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]", f"rendering the reference imported {out.strip()}"
