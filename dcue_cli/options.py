"""Option decorators shared by the subcommands, so the same option means the same everywhere."""

import math

import click


class FiniteFloat(click.FloatRange):
    """A float option that must be a finite number (nan and inf pass click's range checks,
    then make a fit diverge), in an optional range."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.name = "float" if self.min is None and self.max is None else "float range"  # the metavar

    def convert(self, value, param, ctx):
        number = click.FLOAT.convert(value, param, ctx)
        if not math.isfinite(number):
            self.fail(f"{value} is not a finite number: give an ordinary number.", param, ctx)
        return super().convert(number, param, ctx)

    def _describe_range(self) -> str:  # no bounds: --help says nothing, as for a plain float
        return "" if self.min is None and self.max is None else super()._describe_range()


def finite(min=None, max=None, min_open=False, max_open=False) -> FiniteFloat:
    return FiniteFloat(min=min, max=max, min_open=min_open, max_open=max_open)


def _not_stdout(ctx, param, value):
    if value == "-":
        raise click.BadParameter("'-': this output is a binary file (HDF5 or a checkpoint), which cannot go to "
                                 "stdout: give a file name.", ctx=ctx, param=param)
    return value


def positive_list(text, name: str, cast=int, example: str = "128,256,256") -> tuple:
    """'a,b,c' -> a tuple of positive finite numbers (`cast`: int or float), else click's usage error."""
    word = "integers" if cast is int else "numbers"
    try:
        values = tuple(cast(v) for v in str(text).split(",") if v.strip())
    except ValueError:
        raise click.BadParameter(f"{text!r}: expected comma-separated {word}, e.g. {example}",
                                 param_hint=name) from None
    if not values or not all(0 < v < math.inf for v in values):  # also refuses nan
        raise click.BadParameter(f"{text!r}: expected positive {word}", param_hint=name)
    return values


def positive_int_ranges(text, name: str, example: str = "2-16,24,32") -> tuple:
    """'2-16,24,32' -> (2, 3, ..., 16, 24, 32): positive integers and inclusive ranges, else click's usage error."""
    values = []
    for part in (p.strip() for p in str(text).split(",")):
        if not part:
            continue
        low, sep, high = part.partition("-")
        try:
            a, b = int(low), int(high) if sep else int(low)
        except ValueError:
            raise click.BadParameter(f"{text!r}: expected comma-separated integers or ranges, e.g. {example}",
                                     param_hint=name) from None
        if a < 1 or b < a:
            raise click.BadParameter(f"{part!r}: expected a positive integer or a range low-high with low <= high",
                                     param_hint=name)
        values.extend(range(a, b + 1))
    if not values:
        raise click.BadParameter(f"{text!r}: expected positive integers, e.g. {example}", param_hint=name)
    return tuple(sorted(set(values)))


def output_option(help_text="Output file (written atomically).", required=True, **kwargs):
    """-o of a binary output (HDF5, a checkpoint): a file name, never '-' (it wrote a file named '-')."""
    return click.option("-o", "--output", "output", type=click.Path(dir_okay=False), required=required,
                        help=help_text, callback=_not_stdout, **kwargs)


SEED_MAX = 2**32 - 1  # what every stage takes: numpy's and implicit's seeds, torch's, synth's streams


def seed_option(default=0):
    return click.option("--seed", type=click.IntRange(0, SEED_MAX), default=default, show_default=True,
                        help=f"Random seed, 0 to {SEED_MAX}: the same seed gives the same result.")


def jobs_option(help_text="Worker processes (default: all cores)."):
    return click.option("-j", "--jobs", type=click.IntRange(min=1), default=None, help=help_text)


def device_option(default="auto"):
    return click.option("--device", default=default, show_default=True,
                        help="auto (CUDA when present, else CPU), cpu, cuda or cuda:N.")


def plays_input_options(func):
    """--columns, --header and --skip-bad for commands that read a plays TSV."""
    func = click.option("--skip-bad", is_flag=True,
                        help="Skip (and count) malformed lines instead of stopping at the first.")(func)
    func = click.option("--header", type=click.Choice(["auto", "yes", "no"]), default="auto", show_default=True,
                        help="Whether the plays file starts with a header line (auto: detected).")(func)
    func = click.option("--columns", default="0,1,2", show_default=True,
                        help="Zero-based positions of the user, item and count fields "
                             "(HetRec user_artists.dat: 0,1,2 with its header).")(func)
    return func


def fit_on_options(all_help: str):
    """--splits and --fit-on of a model that knows songs by their plays (wmf, twotower): which songs
    to fit. `all_help` says what --fit-on all gives for this model. Check them with `check_fit_on`."""
    def decorate(func):
        func = click.option("--fit-on", type=click.Choice(["all", "train"]), default=None,
                            help=f"With --splits: 'all' fits every song ({all_help}); 'train' only the train "
                                 "songs.")(func)
        return click.option("--splits", type=click.Path(dir_okay=False),
                            help="Song splits (item_id<TAB>train|valid|test) from `dcue subset`; needs "
                                 "--fit-on.")(func)
    return decorate


def check_fit_on(splits, fit_on, all_means: str) -> None:
    """Usage errors for --splits without --fit-on and the reverse; `all_means` says what 'all' is."""
    if splits and not fit_on:
        raise click.UsageError(f"--splits needs --fit-on: 'all' ({all_means}) or 'train' (only the train songs).")
    if fit_on and not splits:
        raise click.UsageError("--fit-on needs --splits (without it every item of PLAYS is fitted).")


def json_option(func):
    return click.option("--json", "as_json", is_flag=True, help="Print the results as JSON on stdout.")(func)
