"""Shell completion through click's documented variable: _DCUE_COMPLETE=bash_source dcue, and so on."""

import os
import shutil
import subprocess
import sys

import pytest

DCUE = [sys.executable, "-m", "dcue_cli"]  # main() names the program dcue, as the entry point does


def _run(env_vars, args=()):
    env = {**os.environ, **env_vars}
    return subprocess.run(DCUE + list(args), env=env, capture_output=True, text=True, check=True).stdout


@pytest.mark.parametrize("shell, marker", [("bash", "complete -o nosort -F _dcue_completion dcue"),
                                           ("zsh", "#compdef dcue"),
                                           ("fish", "complete --no-files --command dcue")])
def test_prints_a_completion_script(shell, marker):
    script = _run({"_DCUE_COMPLETE": f"{shell}_source"})
    assert marker in script


def test_completes_command_names_options_and_choices():
    def complete(words, cword):
        return _run({"_DCUE_COMPLETE": "bash_complete", "COMP_WORDS": words, "COMP_CWORD": str(cword)})

    assert complete("dcue sc", 1).split() == ["plain,score"]
    assert complete("dcue score --pop", 2).split() == ["plain,--popularity", "plain,--popularity-from"]
    assert complete("dcue wmf --fit-on ", 3).split() == ["plain,all", "plain,train"]


@pytest.mark.skipif(shutil.which("bash") is None, reason="no bash")
def test_bash_script_completes_in_bash(tmp_path):
    # What a user's shell does: source the script, then call its function as `complete` would.
    wrapper = tmp_path / "dcue"
    wrapper.write_text(f'#!/bin/sh\nexec "{sys.executable}" -m dcue_cli "$@"\n')
    wrapper.chmod(0o755)
    script = ('eval "$(_DCUE_COMPLETE=bash_source dcue)"; COMP_WORDS=(dcue sc); COMP_CWORD=1; '
              '_dcue_completion dcue sc dcue; printf "%s\\n" "${COMPREPLY[@]}"')
    env = {**os.environ, "PATH": f"{tmp_path}{os.pathsep}{os.environ.get('PATH', '')}"}
    out = subprocess.run(["bash", "-c", script], env=env, capture_output=True, text=True, check=True).stdout
    assert out.split() == ["score"]
