import subprocess
import sys

from conftest import invoke

from dcue_cli import __version__


def test_version():
    assert invoke(["--version"]).stdout.strip() == f"dcue, version {__version__}"


def test_help_lists_commands_and_short_flag():
    out = invoke(["-h"]).stdout
    assert "Usage: dcue" in out
    for name in ("subset",):
        assert name in out


def test_unknown_command_is_usage_error():
    result = invoke(["frobnicate"], expect=2)
    assert "No such command 'frobnicate'" in result.stderr


def test_help_of_every_command_imports_no_heavy_module():
    """What keeps `dcue --help` instant: no torch, librosa, implicit, sklearn or pandas behind it."""
    code = (
        "import sys;"
        "from click.testing import CliRunner; from dcue_cli.cli import cli;"
        "r = CliRunner().invoke(cli, ['--help']); assert r.exit_code == 0, r.output;"
        "[r2 := CliRunner().invoke(cli, [c, '--help']) for c in cli.list_commands(None)];"
        "print([m for m in ('torch', 'librosa', 'implicit', 'sklearn', 'pandas') if m in sys.modules])"
    )
    heavy = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert heavy == "[]", f"--help imported {heavy}"


def test_python_dash_m_works():
    out = subprocess.run([sys.executable, "-m", "dcue_cli", "--help"], capture_output=True, text=True, check=True)
    assert out.stdout.startswith("Usage: dcue")


def test_every_command_help_has_example():
    from dcue_cli.cli import cli

    for name in cli.list_commands(None):
        out = invoke([name, "--help"]).stdout
        assert "Example" in out, f"dcue {name} --help has no example"
