"""The root `dcue` command: global options and lazy registration of the subcommands.

Subcommand modules are imported only when listed or invoked, and they import torch,
librosa and implicit only inside their functions, so `dcue --help` stays instant.
"""

import importlib

import click

from dcue_cli import __version__, log

# name -> module under dcue_cli.commands; each module defines a click command named `cli`.
COMMANDS = {
    "synth": "synth",
    "subset": "subset",
    "melspec": "melspec",
    "wmf": "wmf",
    "train": "train",
    "embed": "embed",
    "refit": "refit",
    "twotower": "twotower",
    "score": "score",
    "recommend": "recommend",
    "autotag": "autotag",
}

CONTEXT_SETTINGS = {"help_option_names": ["-h", "--help"], "max_content_width": 100}


class LazyGroup(click.Group):
    def invoke(self, ctx):
        # The library raises DcueError (no click in it); here it becomes click's one-line
        # `Error: ...` with exit status 1, for every subcommand alike.
        from dcue_cli.errors import DcueError

        try:
            return super().invoke(ctx)
        except DcueError as exc:
            if exc.exit_code == 2:  # OptionError: a misuse of the command line, one line, exit 2
                raise click.UsageError(exc.message) from None
            raise click.ClickException(exc.message) from None

    def list_commands(self, ctx):
        return [name for name in COMMANDS if self._load(name) is not None]

    def get_command(self, ctx, name):
        return self._load(name)

    @staticmethod
    def _load(name):
        module_name = COMMANDS.get(name)
        if module_name is None:
            return None
        full = f"dcue_cli.commands.{module_name}"
        try:
            module = importlib.import_module(full)
        except ModuleNotFoundError as exc:
            if exc.name == full:  # not written yet: simply not offered
                return None
            raise
        return module.cli


@click.group("dcue", cls=LazyGroup, context_settings=CONTEXT_SETTINGS)
@click.version_option(__version__, "--version", prog_name="dcue")
@click.option("-q", "--quiet", is_flag=True, help="No progress bars and no info logs.")
@click.option("-v", "--verbose", count=True, help="More logging (debug details).")
def cli(quiet, verbose):
    """dcue: deep content-user embeddings for cold-start music recommendation.

    From raw audio and user play counts to trained content-user embeddings and their
    evaluation, one step per subcommand, after Lee et al. (DLRS 2018). Every step reads
    and writes plain TSV or HDF5 files; `-` is stdin/stdout where a TSV is expected.

    \b
    A typical pipeline:
      dcue synth data/                                   # or the real MSD files
      dcue melspec data/audio -o mels.h5 --id-map data/unique_tracks.txt
      dcue subset data/train_triplets.txt -o sub/ --songs-with mels.h5
      dcue wmf sub/plays.tsv --splits sub/splits.tsv --fit-on all -o wmf.h5
      dcue train mels.h5 sub/plays.tsv --splits sub/splits.tsv -o model.pt
      dcue embed model.pt mels.h5 -o dcue.h5
      dcue refit dcue.h5 sub/plays.tsv --splits sub/splits.tsv -o dcue_refit.h5
      dcue score dcue.h5 wmf.h5 --popularity --plays sub/plays.tsv --splits sub/splits.tsv
    """
    log.configure(verbosity=verbose, quiet=quiet)


def main():
    from dcue_cli.interrupts import ignore_late_signals

    ignore_late_signals()  # this process ends after a stopped run: a late Ctrl-C must not change exit 130
    cli(prog_name="dcue")


if __name__ == "__main__":
    main()
