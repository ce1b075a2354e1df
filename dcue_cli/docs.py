"""The command reference in Markdown, from click itself: `python -m dcue_cli.docs > docs/commands.md`.

Every command's usage line, its help text (paragraphs as text, `\\b` blocks such as the examples
as code) and a table of every option with the same help, default and range that `--help` shows,
so the reference cannot say anything `--help` does not. tests/test_docs.py fails when the
committed file differs from what this prints. Imports only click and the command modules (which
import nothing heavy at module level).
"""

import inspect
import re

import click

TITLE = "# dcue command reference"
INTRO = """\
Generated from the commands' own `--help` by `python -m dcue_cli.docs > docs/commands.md`;
do not edit it by hand (`tests/test_docs.py` checks that it is up to date).

`python -m dcue_cli` is the same as `dcue`; `torchrun --nproc-per-node N -m dcue_cli train ...`
trains on N GPUs.

Shell completion (commands, options, choices and file names) comes from click: add the line for
your shell to its start-up file, then open a new shell.

```
eval "$(_DCUE_COMPLETE=bash_source dcue)"         # ~/.bashrc
eval "$(_DCUE_COMPLETE=zsh_source dcue)"          # ~/.zshrc
_DCUE_COMPLETE=fish_source dcue | source          # ~/.config/fish/completions/dcue.fish
```
"""


def _escape(text: str) -> str:
    """Markdown-safe text outside `code` spans: <TAB> is not HTML, * not emphasis, | not a cell end."""
    parts = re.split(r"(`[^`]*`)", text)
    for i in range(0, len(parts), 2):  # the even parts are outside code spans
        text = parts[i].replace("\\", "\\\\").replace("<", "&lt;").replace("*", "\\*").replace("|", "\\|")
        parts[i] = re.sub(r"(?<!\w)_|_(?!\w)", r"\\_", text)  # user_id stays; _x_ is no emphasis
    return "".join(parts)


def _cell(text: str) -> str:
    return _escape(" ".join(text.split()))


def _help_markdown(help_text: str) -> list:
    """click's help text -> Markdown lines: rewrapped paragraphs; `\\b` blocks verbatim, as code."""
    lines = []
    for block in re.split(r"\n\s*\n", inspect.cleandoc(help_text or "")):
        if not block.strip():
            continue
        if block.startswith("\b"):
            body = block[1:].strip("\n").splitlines()
            # A heading line such as 'Example:' stays text; what it introduces is code.
            if body and body[0].rstrip().endswith(":") and not body[0].startswith(" "):
                lines += [f"**{_escape(body[0].strip()[:-1])}**:", ""]
                body = body[1:]
            lines += ["```"] + [inspect.cleandoc("\n".join(body))] + ["```", ""]
        else:
            lines += [_escape(" ".join(block.split())), ""]
    return lines


def _anchor(path: str) -> str:
    return path.lower().replace(" ", "-")


def _command_markdown(command: click.Command, ctx: click.Context) -> list:
    path = ctx.command_path
    usage = f"{path} {' '.join(command.collect_usage_pieces(ctx))}".rstrip()
    lines = [f"## {path}", "", "```", f"Usage: {usage}", "```", ""]
    lines += _help_markdown(command.help)
    records = [p.get_help_record(ctx) for p in command.get_params(ctx) if isinstance(p, click.Option)]
    records = [r for r in records if r]  # hidden options have none
    if records:
        lines += ["| option | description |", "| --- | --- |"]
        for opts, text in records:
            opts = opts.replace("|", "\\|")  # a table cell ends at | even inside a code span
            lines.append(f"| `{opts}` | {_cell(text)} |")
        lines.append("")
    return lines


def command_names() -> list:
    """The subcommands `dcue --help` lists (those whose modules exist), in its order."""
    from dcue_cli.cli import cli

    return cli.list_commands(click.Context(cli, info_name="dcue", **cli.context_settings))


def render() -> str:
    """The whole reference: the root command, then every subcommand."""
    from dcue_cli.cli import cli

    root = click.Context(cli, info_name="dcue", **cli.context_settings)  # -h/--help, as when run
    names = command_names()
    lines = [TITLE, "", INTRO]
    lines += ["- [`dcue`](#dcue)"] + [f"- [`dcue {n}`](#{_anchor('dcue ' + n)}): "
                                      f"{_escape(cli.get_command(root, n).get_short_help_str(limit=200))}"
                                      for n in names]
    lines.append("")
    lines += _command_markdown(cli, root)
    for name in names:
        command = cli.get_command(root, name)
        lines += _command_markdown(command, click.Context(command, info_name=name, parent=root))
    return "\n".join(lines).rstrip("\n") + "\n"


def main() -> None:
    import sys

    sys.stdout.write(render())


if __name__ == "__main__":
    main()
