"""``vaekit``: the command line. The only module that reads argv or prints.

Exit codes: 0 success; 2 bad usage or bad input (one line, starting ``error:``, naming the
problem; no traceback); 1 an unexpected failure (short message; the traceback with
``--debug``); 130 interrupted (Ctrl-C).
"""

from __future__ import annotations

import argparse
import csv
import io
import json
import logging
import math
import os
import sys
import typing
import warnings
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vaekit import distributed, model_settings, runfolder, runs
from vaekit._version import __version__
from vaekit.diagnostics import run_warnings
from vaekit.distributions import posterior_mean
from vaekit.errors import FileFormatError, InputError, RunInterrupted, TrainingError, VaekitError
from vaekit.formatting import format_value

# The run's warnings reach the user as "warning: ..." lines of the summary; without a handler of
# its own, logging's last-resort handler would print each one a second time.
logging.getLogger("vaekit.diagnostics").addHandler(logging.NullHandler())


class UsageError(Exception):
    """Bad command-line usage or input: exit code 2 with a one-line message."""


# ---------------------------------------------------------------------------- parser
class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage, so every usage error is one line."""

    def error(self, message: str) -> typing.NoReturn:
        raise UsageError(f"{message} (see '{self.prog} --help')")


class _Help(argparse.RawDescriptionHelpFormatter):
    """Keeps the examples' line breaks; defaults are written into each help text."""


HELP: dict[str, str] = {
    "n": "number of points drawn from a built-in dataset",
    "data_seed": "seed of a built-in dataset",
    "columns": "data columns of a CSV/.npy file, comma separated (default: all but the condition, --label and --exclude)",
    "exclude": "columns of the file that are not data (ids, names, ...), comma separated",
    "label": "a column that colours the plots, the latent scatter and the explorer; not trained on, not a condition",
    "log_columns": "data columns modelled on a log scale, log(x + --log-offset), comma separated: values >= 0 "
    "spanning decades (counts, sizes); 'auto': the columns whose values >= 0 have a skewness above 2 and a maximum "
    "over 10 times the median; densities stay in data units",
    "log_offset": "offset of the --log-columns, log(x + offset): 1 for counts with zeros",
    "threads": "torch CPU threads for the run (0: torch's default)",
    "test_fraction": "hold out this share of the data's rows, in (0, 1), for metrics.json (seeded by --split-seed; default: off)",
    "split_seed": "seed of the --test-fraction split",
    "epochs": "training epochs",
    "batches_per_epoch": (
        "cut the rows into about this many batches per epoch: batch size ceil(rows / N), up to --batch-size "
        f"(0: off; default for a data file without --batch-size: {runs.USER_BATCHES_PER_EPOCH}, otherwise 0)"
    ),
    "batch_size": "minibatch size",
    "lr": "Adam learning rate",
    "seed": "seed of the initial weights, shuffling and noise",
    "objective": "training objective (default: the model's own, vq for --model vqvae)",
    "beta": "KL weight (beta-VAE when > 1)",
    "warmup_epochs": "linear KL warm-up over this many epochs (0: off)",
    "free_bits": "free bits per latent dimension, nats (0: off)",
    "iwae_k": "importance samples of the IWAE objective",
    "commitment": "VQ objective: weight of the commitment term",
    "ema": "VQ objective: moving-average decay of the codebook in (0, 1) (0: learned by gradient)",
    "val_fraction": "share of the training rows held out for validation (0: none; a data file's default: 0.2 "
    "with early stopping when that makes at least 10 rows, else none)",
    "patience": "early stopping patience on val_loss in epochs (0: off; needs --val-fraction; a data file's default: 40)",
    "grad_clip": "clip the gradient norm to this value (0: off)",
    "weight_decay": "Adam weight decay",
    "device": "torch device (cpu, cuda, cuda:1, ...)",
    "precision": "float32, or bf16 for autocast of the training forward passes (mostly for GPUs)",
    "checkpoint_every": "write a checkpoint every this many epochs (0: fit's default, 10)",
    "eval_k": "metrics: importance samples of the IWAE estimate",
    "eval_n_samples": "metrics: model samples for the sample-quality metrics",
    "eval_quadrature_grid": "metrics: cells per axis of the 2-D quadrature (0: 200 for 2-D data, 60 otherwise)",
    "eval_permutations": "metrics: permutations of the MMD test",
}


def flags() -> dict[str, tuple[str, str]]:
    """Flag name -> (section, key). data.name/path, condition and options have their own flags.

    The [model] flags are every key of :func:`vaekit.model_settings.all_settings` (``type`` is
    ``--model``), so a new model or spec adds its own flags.
    """
    return {
        "n": ("data", "n"),
        "data_seed": ("data", "seed"),
        "columns": ("data", "columns"),
        "exclude": ("data", "exclude"),
        "label": ("data", "label"),
        "log_columns": ("data", "log_columns"),
        "log_offset": ("data", "log_offset"),
        "test_fraction": ("data", "test_fraction"),
        "split_seed": ("data", "split_seed"),
        **{("model" if key == "type" else key): ("model", key) for key in runs.section_schema("model")},
        **{key: ("training", key) for key in runs.SCHEMA["training"]},
        **{f"eval_{key}": ("evaluation", key) for key in runs.SCHEMA["evaluation"]},
    }


def _help(flag: str, section: str, key: str) -> str:
    if section == "model":
        setting = model_settings.all_settings()[key]
        return setting.help + (f" (applies when {setting.applies})" if setting.applies else "")
    return HELP[flag]


EPILOG = {
    "demo": """examples:
  vaekit demo                      # ring data, lecture recipe, 400 epochs -> runs/demo/report.html
  vaekit demo --epochs 50 --out runs/quick
  vaekit demo --force              # replace an existing runs/demo
  vaekit demo --model mixture      # a learned mixture prior -> runs/demo-mixture/report.html""",
    "train": """examples:
  vaekit train --data moons --epochs 200 --out runs/moons
  vaekit train --data ring --condition label:onehot --out runs/cvae
  vaekit train --data ring --nproc 2            # 2 processes with DDP (the same as torchrun)
  vaekit train --data ring --condition radius:continuous --beta 4 --out runs/radius
  vaekit train --data digits --z-dim 8 --out runs/digits
  vaekit train --data points.csv --columns x,y --condition group:onehot --out runs/mine
  vaekit train --data airfoils --condition thickness:continuous --z-dim 6 --out runs/thick  # shape property
  vaekit train --data table.csv --test-fraction 0.2 --out runs/table  # metrics on 20% held-out rows
  vaekit train --data train.csv --test-data test.csv --out runs/table # metrics on a held-out file
  vaekit train --data votes.csv --log-columns gore,bush --log-offset 1 --out runs/votes  # counts on a log scale
  vaekit train --config runs/demo/config.toml --out runs/again   # same run, bit for bit on CPU
  vaekit train --resume runs/long                                # continue an interrupted run""",
    "evaluate": """examples:
  vaekit evaluate runs/demo                 # held-out data next to the training data, as in metrics.json
  vaekit evaluate runs/mine --data test.csv --json -o test-metrics.json
  vaekit evaluate runs/mine --data new.csv --add-to-report   # one more column in report.html""",
    "sample": """examples:
  vaekit sample runs/demo -n 1000 -o samples.csv
  vaekit sample runs/cvae -n 500 --condition 3 -o mode3.npy
  vaekit sample runs/radius -n 200 --condition 2.5 --noise
  vaekit sample runs/digits -n 64 -o samples.png    # image or curve data: a picture (.png, .svg, .pdf)
  vaekit sample runs/thick -n 8 --condition 0.12 -o s.png   # and the thickness measured on them""",
    "encode": """examples:
  vaekit encode runs/demo data.csv -o z.csv          # posterior means z0, z1, ...
  vaekit encode runs/demo data.csv -o z.csv --std    # and posterior stds z0_std, ...""",
    "decode": """examples:
  vaekit decode runs/demo z.csv -o x.csv             # decoder means for each row of z
  vaekit decode runs/cvae z.csv --condition 2 -o x.npy""",
    "report": """examples:
  vaekit report runs/demo                            # (re)writes runs/demo/report.html
  vaekit report runs/wing --units standardized       # figures redrawn in standardised units""",
    "convert": """examples:
  vaekit convert big.csv big.npy                     # then: vaekit train --data big.npy
reads the CSV twice (count and check, then write); memory use does not grow with the file.""",
    "sweep": """examples:
  vaekit sweep --data ring --set variance=0.01,0.1,1,5 --set seed=0,1,2       # the lecture's experiment
  vaekit sweep --data moons --set beta=0.5,1,4 --epochs 200 --out runs/beta
writes DIR/sweep.csv (one row per model), DIR/sweep.png (2-D data), DIR/config.toml and
DIR/models/NN/ (each loadable with vaekit.load).""",
}


def _float_or_word(annotation: Any):
    """Parser of a ``float | Literal[...]`` setting: a number or one of the words."""
    literals = [part for part in typing.get_args(annotation) if typing.get_origin(part) is typing.Literal]
    words = [w for part in literals for w in typing.get_args(part)]

    def parse(text: str) -> float | str:
        if text in words:
            return text
        try:
            return float(text)
        except ValueError:
            shown = ", ".join(repr(w) for w in words)
            raise argparse.ArgumentTypeError(f"expected a number or one of {shown}; got {text!r}") from None

    return parse


def _open_fraction(text: str) -> float:
    """A number strictly between 0 and 1 (--test-fraction)."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not 0.0 < value < 1.0:
        raise argparse.ArgumentTypeError(f"expected a number strictly between 0 and 1 such as 0.2; got {text!r}")
    return value


def _int_list(text: str) -> list[int]:
    try:
        return [int(v) for v in text.split(",") if v.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 128,128; got {text!r}") from None


def _str_list(text: str) -> list[str]:
    return [v.strip() for v in text.split(",") if v.strip()]


def _str_list_or_auto(text: str) -> list[str] | str:
    return "auto" if text.strip() == "auto" else _str_list(text)


def _add_schema_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("settings (override --config; defaults are the lecture recipe)")
    for flag, (section, key) in flags().items():
        annotation, default = runs.section_schema(section)[key]
        name = "--" + flag.replace("_", "-")
        text = _help(flag, section, key)
        shown = "" if "default" in text or default in (None, "", []) else f" (default: {default})"
        kwargs: dict[str, Any] = {"dest": flag, "default": None, "help": text + shown}
        if flag == "test_fraction":
            kwargs["type"], kwargs["metavar"] = _open_fraction, "F"
        elif annotation is bool:
            kwargs["action"] = argparse.BooleanOptionalAction
        elif annotation in (int, float, str):
            kwargs["type"] = annotation
            kwargs["metavar"] = annotation.__name__.upper()
        elif annotation == list[int]:
            kwargs["type"], kwargs["metavar"] = _int_list, "W1,W2"
        elif annotation == list[str]:
            kwargs["type"], kwargs["metavar"] = _str_list, "COL1,COL2"
        elif annotation == list[str] | typing.Literal["auto"]:
            kwargs["type"], kwargs["metavar"] = _str_list_or_auto, "COL1,COL2|auto"
        elif typing.get_origin(annotation) is typing.Literal:
            kwargs["choices"] = typing.get_args(annotation)
        else:  # float | Literal
            kwargs["type"], kwargs["metavar"] = _float_or_word(annotation), "VALUE"
        group.add_argument(name, **kwargs)


def _common(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("-q", "--quiet", action="store_true", help="no progress bar or summary")
    parser.add_argument("--debug", action="store_true", help="show the traceback of unexpected errors")


def build_parser() -> argparse.ArgumentParser:
    """The ``vaekit`` argument parser with all sub-commands."""
    parser = _Parser(
        prog="vaekit",
        description="Train, evaluate and explore variational autoencoders.",
        epilog="start here:\n  vaekit demo        # trains on the ring data and writes runs/demo/report.html\n\n"
        "Run 'vaekit COMMAND --help' for the options and examples of each command.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"vaekit {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text, epilog=EPILOG[name], formatter_class=_Help)
        _common(p)
        return p

    p = command("demo", "Train the lecture's VAE (or another member of the family) on the ring data and write a run folder.")
    p.add_argument("--out", help="run folder to write (default: runs/demo, or runs/demo-NAME with --model)")
    p.add_argument(
        "--model",
        choices=model_settings.member_names(),
        metavar="NAME",
        help=f"family member, on the lecture's settings otherwise: {', '.join(model_settings.member_names())} (default: vae)",
    )
    p.add_argument("--epochs", type=int, default=None, help="training epochs (default: 400)")
    p.add_argument("--n", type=int, default=None, help="ring points (default: 2000)")
    p.add_argument("--seed", type=int, default=None, help="training seed (default: 0)")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")

    p = command("train", "Train a VAE on a built-in dataset or your CSV/.npy file and write a run folder.")
    p.add_argument(
        "--data",
        metavar="NAME|PATH",
        help="built-in dataset (ring, moons, circles, swiss_roll, pinwheel, digits, airfoils) or a file",
    )
    p.add_argument("--config", metavar="TOML", help="settings file (e.g. a run's config.toml); flags override it")
    p.add_argument(
        "--condition",
        metavar="NAME:TYPE",
        help="label:onehot or radius:continuous (built-in data), COLUMN:onehot|continuous (files); curves (airfoils, "
        "an (N, P, 2) .npy): shape properties thickness, camber, thickness_x, camber_x, e.g. thickness,camber:continuous",
    )
    p.add_argument(
        "--option", action="append", default=[], metavar="KEY=VALUE", help="built-in dataset option, e.g. modes=6 (repeatable)"
    )
    p.add_argument(
        "--test-data", metavar="PATH", help="held-out file with the training data's columns, for metrics.json and the report"
    )
    p.add_argument("--out", help="run folder to write (default: runs/<data name>)")
    p.add_argument("--force", action="store_true", help="replace an existing run folder")
    p.add_argument("--resume", metavar="DIR", help="continue the interrupted run that was writing to DIR")
    p.add_argument(
        "--nproc",
        type=int,
        metavar="N",
        help="train on N local processes with DDP (the same as 'torchrun --standalone --nproc_per_node N -m vaekit train ...')",
    )
    _header_flags(p)
    _stream_flags(p)
    _add_schema_flags(p)

    p = command("evaluate", "Compute the metrics of a trained run.")
    p.add_argument("run", metavar="DIR", help="run folder")
    p.add_argument("--data", metavar="NAME|PATH", help="evaluate on this data instead (built-in name or file)")
    p.add_argument("--n", type=int, help="points drawn from a built-in dataset")
    p.add_argument("--seed", type=int, default=0, help="seed of the estimators (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON instead of a table")
    p.add_argument("-o", "--output", metavar="FILE.json", help="also write the metrics to this JSON file")
    p.add_argument(
        "--add-to-report",
        action="store_true",
        help="add these numbers (of --data) as a column of the run's metrics.json and report.html",
    )

    p = command("sample", "Draw samples from a trained run's model.")
    p.add_argument("run", metavar="DIR", help="run folder")
    p.add_argument("-n", type=int, required=True, help="number of samples")
    p.add_argument("--condition", metavar="VALUE", help="class label or name (onehot), number(s) a,b (continuous)")
    p.add_argument("--seed", type=int, default=0, help="sampling seed (default: 0)")
    p.add_argument("--noise", action="store_true", help="draw x ~ p(x|z) instead of the decoder mean")
    p.add_argument(
        "-o",
        "--output",
        metavar="FILE",
        help="write .csv or .npy (default: CSV on stdout); .png, .svg or .pdf: a picture (image and curve data)",
    )

    p = command("encode", "Encode data to latent codes (posterior means).")
    p.add_argument("run", metavar="DIR", help="run folder")
    p.add_argument("data", metavar="FILE", help="CSV (with the run's columns) or .npy")
    p.add_argument("--condition", metavar="VALUE", help="one condition for every row (else the file's condition column)")
    p.add_argument("--std", action="store_true", help="also write the posterior standard deviations")
    p.add_argument("-o", "--output", metavar="FILE", help="write .csv or .npy (default: CSV on stdout)")

    p = command("decode", "Decode latent codes to data space (decoder means).")
    p.add_argument("run", metavar="DIR", help="run folder")
    p.add_argument("codes", metavar="FILE", help="CSV with columns z0, z1, ... or .npy of shape (N, z_dim)")
    p.add_argument("--condition", metavar="VALUE", help="condition for every row (conditional models)")
    p.add_argument("-o", "--output", metavar="FILE", help="write .csv or .npy (default: CSV on stdout)")

    p = command("report", "Write (or rewrite) report.html of a run folder.")
    p.add_argument("run", metavar="DIR", help="run folder")
    p.add_argument(
        "--units",
        choices=("data", "standardized"),
        help="redraw the figures first, in data units or (models trained with --standardize) standardised units",
    )

    p = command("convert", "Convert a numeric CSV (with a header row) to a float32 .npy, in constant memory.")
    p.add_argument("csv", metavar="CSV", help="the CSV file")
    p.add_argument("npy", metavar="NPY", help="the .npy file to write")
    p.add_argument("--force", action="store_true", help="replace an existing NPY")

    p = command("sweep", "Train one model per combination of hyperparameter values, all at once, and compare them.")
    p.add_argument(
        "--set",
        action="append",
        required=True,
        metavar="KEY=V1,V2",
        help="swept hyperparameter and its values; KEY is variance, beta, seed or lr (repeatable: the grid is the product)",
    )
    p.add_argument("--data", metavar="NAME|PATH", help="built-in dataset or a file (as for train)")
    p.add_argument("--config", metavar="TOML", help="settings file; flags override it")
    p.add_argument("--condition", metavar="NAME:TYPE", help="as for train")
    p.add_argument("--option", action="append", default=[], metavar="KEY=VALUE", help="built-in dataset option")
    p.add_argument("--out", default="runs/sweep", help="folder to write (default: runs/sweep)")
    p.add_argument("--force", action="store_true", help="replace an existing folder")
    _header_flags(p)
    _add_schema_flags(p)
    return parser


def _stream_flags(parser: argparse.ArgumentParser) -> None:
    """--stream / --no-stream: [data] stream of a .npy file (default auto: stream when it is large)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--stream",
        dest="stream",
        action="store_true",
        default=None,
        help="train from the .npy file in shuffled blocks without loading it (data larger than memory)",
    )
    group.add_argument(
        "--no-stream",
        dest="stream",
        action="store_false",
        help="load the .npy file whole (default: auto, stream when the file exceeds a quarter of the available memory)",
    )


def _header_flags(parser: argparse.ArgumentParser) -> None:
    """--header / --no-header: [data] header of a CSV file (default auto: no header when the first row is all numbers)."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument(
        "--header", dest="header", action="store_true", default=None, help="the CSV's first row holds column names"
    )
    group.add_argument(
        "--no-header",
        dest="header",
        action="store_false",
        help="the CSV has no header row: its first row is data; columns are col0, col1, ... "
        "(default: auto, no header when every cell of the first row is a number)",
    )


# ---------------------------------------------------------------------------- output
class _Console:
    """Messages for people: stdout for results, stderr for progress; silent with --quiet."""

    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet

    def say(self, text: str) -> None:
        if not self.quiet:
            print(text)


class _Display:
    """A terminal's view of a run: a progress bar with live loss/KL, then a spinner while results are written."""

    def __init__(self, epochs: int, name: str, loss: str) -> None:
        from rich.console import Console
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

        self.console = Console(stderr=True)
        self.bar = Progress(
            TextColumn("training"),
            BarColumn(),
            MofNCompleteColumn(),
            TextColumn("loss {task.fields[loss]}  KL {task.fields[kl]}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            console=self.console,
            transient=False,
        )
        self.task = self.bar.add_task(name, total=epochs, loss=loss, kl=loss)
        self.live: Any = None  # the bar or a spinner, whichever is on screen

    def epoch(self, epoch: int, epochs: int, record: dict[str, Any] | None = None) -> None:
        if self.live is None:  # runs.sweep reports no stages: the first epoch shows the bar
            self.status(runs.STAGE_TRAINING)
        # A model without a KL (a VQ-VAE) shows n/a there: no KL is never a KL of 0.
        fields = {} if record is None else {"loss": f"{record['loss']:.4f}", "kl": _term(record, "kl")}
        self.bar.update(self.task, completed=epoch, **fields)

    def status(self, text: str) -> None:
        self.close()
        self.live = self.bar if text == runs.STAGE_TRAINING else self.console.status(text)
        self.live.start()

    def close(self) -> None:
        if self.live is not None:
            self.live.stop()
            self.live = None


def _display(quiet: bool, epochs: int, name: str = "train", loss: str = "?") -> _Display | None:
    """A :class:`_Display` on a terminal; None when quiet or stderr is not a TTY."""
    if quiet or not sys.stderr.isatty():
        return None
    return _Display(epochs, name, loss)


def _write_array(path: str | None, array: np.ndarray, header: list[str]) -> None:
    """Write rows as CSV (header, float repr) or .npy; ``None`` prints CSV to stdout."""
    from vaekit.io import atomic_write_bytes, atomic_write_text

    if path is None:
        buffer = io.StringIO()
        _csv_rows(buffer, array, header)
        sys.stdout.write(buffer.getvalue())
        return
    suffix = Path(path).suffix.lower()
    if suffix == ".npy":
        buffer = io.BytesIO()
        np.save(buffer, np.asarray(array, dtype=np.float32), allow_pickle=False)
        atomic_write_bytes(path, buffer.getvalue())
    elif suffix == ".csv":
        buffer = io.StringIO()
        _csv_rows(buffer, array, header)
        atomic_write_text(path, buffer.getvalue())
    else:
        raise UsageError(f"-o {path}: the output file must end in .csv or .npy.")


def _csv_rows(handle, array: np.ndarray, header: list[str]) -> None:
    writer = csv.writer(handle, lineterminator="\n")
    writer.writerow(header)
    # repr of the float32 value as a Python float: reads back to the same float32.
    writer.writerows([[repr(float(v)) for v in row] for row in np.asarray(array, dtype=np.float32)])


# ---------------------------------------------------------------------------- config from flags
def _data_override(text: str) -> dict[str, Any]:
    from vaekit.data import DATASETS

    if text in DATASETS:
        return {"name": text, "path": ""}
    path = Path(text)
    if path.is_file():
        return {"name": "", "path": str(path.resolve())}
    if path.suffix or os.sep in text:
        raise UsageError(f"--data: data file {text} does not exist.")
    raise UsageError(f"--data: unknown dataset {text!r}; built-in datasets are {sorted(DATASETS)}, or give a .csv/.npy file.")


def _condition_override(text: str) -> dict[str, Any]:
    name, sep, kind = text.rpartition(":")
    if not sep or not name or kind not in ("onehot", "continuous"):
        raise UsageError(f"--condition must be NAME:onehot or NAME:continuous (e.g. label:onehot). Got {text!r} instead.")
    return {"condition": name, "condition_type": kind}


def _option_override(items: Sequence[str]) -> dict[str, Any]:
    options: dict[str, Any] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"--option must be KEY=VALUE (e.g. modes=6). Got {item!r} instead.")
        try:
            options[key.strip()] = runfolder.tomllib.loads(f"v = {value.strip()}")["v"]
        except runfolder.tomllib.TOMLDecodeError:
            options[key.strip()] = value.strip()  # a bare word is a string
    return options


def resolve_config(args: argparse.Namespace) -> dict[str, dict[str, Any]]:
    """Defaults <- ``--config`` file <- flags; validated. Digits default to a Bernoulli likelihood.

    A relative data path in the config file is taken relative to the file's folder; the config
    that is written to the run folder always holds an absolute path.
    """
    merged: dict[str, dict[str, Any]] = {}
    source = "settings"
    if getattr(args, "config", None):
        merged = runs.read_config_file(args.config)
        source = args.config
        _older_run_settings(args, merged)
    data = merged.setdefault("data", {})
    if getattr(args, "data", None):
        data.update(_data_override(args.data))
    if getattr(args, "condition", None):
        data.update(_condition_override(args.condition))
    if getattr(args, "test_data", None):
        if not Path(args.test_data).is_file():
            raise UsageError(f"--test-data: data file {args.test_data} does not exist.")
        data["test_path"] = str(Path(args.test_data).resolve())
    if getattr(args, "option", None):
        data["options"] = {**data.get("options", {}), **_option_override(args.option)}
    if getattr(args, "header", None) is not None:
        data["header"] = args.header
    if getattr(args, "stream", None) is not None:
        data["stream"] = args.stream
    for flag, (section, key) in flags().items():
        value = getattr(args, flag, None)
        if value is not None:
            merged.setdefault(section, {})[key] = value
    return runs.complete_config(merged, source=source)


def _older_run_settings(args: argparse.Namespace, merged: dict[str, dict[str, Any]]) -> None:
    """Say which settings an older run's config.toml reads as that run had them (runs.older_run_settings).

    With ``--data`` naming another file, the file's settings train other data, and today's
    defaults for that data apply instead (the older run's choice was about its own file).
    """
    given, own = getattr(args, "data", None), merged.get("data", {}).get("path")
    path = given and _data_override(given).get("path")
    other = bool(given) and not (path and own and Path(path).resolve() == Path(own).resolve())
    for (section, key), value in runs.older_run_settings_of(args.config).items():
        if other:
            merged[section].pop(key, None)
        elif not getattr(args, "quiet", False) and getattr(args, key, None) is None:  # unless a flag sets it
            print(
                f"note: {args.config} was written by a run before [{section}] {key} existed: {key} = {value!r}, as that "
                f"run had ({'--log-columns auto chooses them from the rows' if key == 'log_columns' else 'give it to change it'})"
            )


# ---------------------------------------------------------------------------- commands
def _cmd_demo(args: argparse.Namespace, out: _Console) -> int:
    config = runs.default_config()
    for key, value in (("epochs", args.epochs), ("seed", args.seed)):
        if value is not None:
            config["training"][key] = value
    if args.n is not None:
        config["data"]["n"] = args.n
    if args.model:
        config["model"] = model_settings.member_settings(args.model)
        del config["training"]["objective"]  # the member's own (VQ for a VQ-VAE)
    config = runs.validate_config(config, source="demo settings")
    target = Path(args.out or ("runs/demo" if args.model in (None, "vae") else f"runs/demo-{args.model}"))
    return _train(config, target, args, out, command="vaekit demo")


RESUME_FLAGS = ("epochs", "lr", "grad_clip", "weight_decay")


def _cmd_train(args: argparse.Namespace, out: _Console) -> int:
    if args.nproc is not None:
        return _launch(args)
    if distributed.env_rank() != 0:  # under torchrun rank 0 alone speaks (and writes)
        args.quiet = True
        out = _Console(True)
    if args.resume:
        extra = [
            f
            for f, (section, _) in flags().items()
            if getattr(args, f) is not None and f not in RESUME_FLAGS and section != "evaluation"
        ]
        fixed = args.header is not None or args.stream is not None or args.test_data
        if args.config or args.data or args.condition or args.option or fixed or extra:
            data_flags = "--config/--data/--condition/--option/--header/--stream/--test-data"
            given = ["--" + f.replace("_", "-") for f in extra] or [data_flags]
            raise UsageError(
                f"--resume takes the settings of the interrupted run; only --epochs, --lr, --grad-clip, --weight-decay "
                f"and --eval-* may change. Got {', '.join(given)} instead."
            )
        target = Path(args.resume)
        staging = runs.partial_path(target)
        if not (staging / runs.CONFIG).is_file():
            raise UsageError(f"--resume {target}: nothing to resume: {staging} (left by an interrupted run) does not exist.")
        config = runs.read_config(staging / runs.CONFIG)
        for flag, (section, key) in flags().items():
            if getattr(args, flag) is not None and (flag in RESUME_FLAGS or section == "evaluation"):
                config[section][key] = getattr(args, flag)
        config = runs.validate_config(config, source=str(staging / runs.CONFIG))
        return _train(config, target, args, out, command="vaekit train", resume=True)
    config = resolve_config(args)
    default_out = Path("runs") / (config["data"]["name"] or Path(config["data"]["path"]).stem)
    target = Path(args.out) if args.out else default_out
    return _train(config, target, args, out, command="vaekit train")


def _launch(args: argparse.Namespace) -> int:
    """``vaekit train --nproc N ...``: the same command under torchrun with N local processes."""
    if args.nproc < 1:
        raise UsageError(f"--nproc must be a number of processes >= 1. Got {args.nproc} instead.")
    if distributed.launched_size() > 1:
        raise UsageError(
            "--nproc starts torchrun, and this process is already one of a torchrun job's "
            f"{distributed.launched_size()} ranks. Got --nproc {args.nproc} inside torchrun instead: drop --nproc."
        )
    rest = _without_nproc(args.argv)
    launcher = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    import subprocess

    # "--" ends torchrun's own options: its parser would otherwise take e.g. --n for an abbreviation of --nnodes.
    code = subprocess.run([*launcher, "-m", "vaekit", "--", *rest], check=False).returncode
    if code != 0:
        print(
            f"error: training on {args.nproc} processes failed (torchrun exit code {code}); torchrun's report above names "
            "the first rank that failed and why. An interrupted run resumes with 'vaekit train --resume DIR' (any --nproc).",
            file=sys.stderr,
        )
        return 1
    return 0


def _without_nproc(argv: Sequence[str]) -> list[str]:
    """``argv`` without its ``--nproc N`` / ``--nproc=N``, also abbreviated as argparse allows (``--np 2``)."""
    rest, skip = [], False
    for item in argv:
        flag = item.split("=", 1)[0]
        is_nproc = len(flag) > 3 and "--nproc".startswith(flag)  # "--n" alone is ambiguous: argparse refuses it
        if skip:
            skip = False
        elif is_nproc:
            skip = "=" not in item
        else:
            rest.append(item)
    return rest


def _train(config: dict[str, dict[str, Any]], target: Path, args: argparse.Namespace, out: _Console, **kwargs) -> int:
    """``runs.train`` with the progress display; prints the summary."""
    if distributed.env_rank() == 0:
        runs.check_out(target, force=args.force)  # the command line's wording of runs.train's own check
    display = _display(args.quiet, config["training"]["epochs"])
    try:
        run = runs.train(
            config,
            target,
            force=args.force,
            progress=None if display is None else display.epoch,
            status=None if display is None else display.status,
            **kwargs,
        )
    finally:
        if display is not None:
            display.close()
    history = run.history
    last = history.last()
    active = run.metrics.get("active_units")
    # Never a bare "KL 0.0000": the active units say whether the latent code is used at all.
    used = f", active units {active} of {run.metrics['z_dim']}" if isinstance(active, int) else ""
    out.say(
        f"trained {len(history)} epochs in {history.seconds:.1f} s: loss {last['loss']:.4f}, KL {_term(last, 'kl')}{used}\n"
        f"wrote {target}/ (open {target / runs.REPORT})"
    )
    for why in run.info.get("chosen", {}).values():  # settings chosen from the data: batch_size by batches_per_epoch
        out.say(f"note: {why}")
    d = run.config["data"]
    if config["data"]["header"] == "auto" and d["header"] is False:
        out.say(
            f"note: {d['path']} has no header row (every cell of its first row is a number): its columns are named "
            "col0, col1, ... and no row is lost; use --header if the first row holds names"
        )
    for text in run.metrics.get("warnings") or []:
        print(f"warning: {text}", file=sys.stderr)  # also with --quiet: a warning is not progress
    distributed.leave()  # under torchrun: every rank finished the run; leave together (no-op otherwise)
    return 0


def _term(record: dict[str, Any], key: str) -> str:
    """A History value for the console, or n/a where the model has no such term."""
    return f"{record[key]:.4f}" if key in record else "n/a"


def _load_run(path: str):
    from vaekit.io import load

    folder = runs.require_run(path)
    model = load(folder)
    config = runs.read_config(folder / runs.CONFIG) if (folder / runs.CONFIG).is_file() else None
    info = runs.read_json(folder / runs.RUN_INFO) if (folder / runs.RUN_INFO).is_file() else {}
    return folder, model, config, info


def _cmd_evaluate(args: argparse.Namespace, out: _Console) -> int:
    folder, model, config, info = _load_run(args.run)
    if config is None:
        raise FileFormatError(f"{folder} has no {runs.CONFIG}; cannot tell which data to evaluate on.")
    if args.add_to_report and not args.data:
        raise UsageError("--add-to-report needs --data (the run's own metrics are in the report already). Got no --data instead.")
    if args.output and Path(args.output).suffix.lower() != ".json":
        raise UsageError(f"-o {args.output}: the metrics file must end in .json.")
    if args.data:
        _data_override(args.data)  # the flag's own messages for a name or file that is not there
        metrics = runs.evaluate_on(folder, args.data, n=args.n or None, seed=args.seed, name="--data")
    else:
        train, held = runs.load_data(config), None
        if args.n:  # a held-out sample of another size; the training column stays the run's training data
            n_config = runs.validate_config({**config, "data": dict(config["data"], n=args.n)}, source="evaluate settings")
            held = runs.load_data(n_config, test=True)
        metrics = runs.run_metrics(model, train, held or runs.load_data(config, test=True), config, seed=args.seed)
        metrics["warnings"] = run_warnings(metrics, train.x, config, model=model, columns=train.columns)
    if args.output:
        runs.write_json(args.output, metrics)
    if args.add_to_report:
        label = Path(args.data).name + (f" (n={args.n})" if args.n else "")
        verb = "replaced" if runs.add_to_report_column(folder, label, metrics) else "added"
        out.say(f"{verb} the column {label!r} in {folder / runs.METRICS} and {folder / runs.REPORT}")
    if args.json:
        print(json.dumps(runs._jsonable(metrics), indent=2))
    elif not args.quiet:
        print(_metric_table(runs.metric_columns(metrics)))
        for text in _curve_tables(runs.metric_columns(metrics)):
            print(f"\n{text}")
    for text in metrics["warnings"]:
        print(f"warning: {text}", file=sys.stderr)
    return 0


def _metric_table(columns: list[tuple[str, dict[str, Any]]]) -> str:
    """Metrics as text: one row per metric, one column per evaluated dataset (n/a where it has none)."""
    names = list(dict.fromkeys(k for _, values in columns for k in values if k != "curves"))  # curves: _curve_tables
    head = ["metric", *(heading for heading, _ in columns)]
    rows = [[name, *(format_value(values[name]) if name in values else "n/a" for _, values in columns)] for name in names]
    widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows])


def _curve_tables(columns: list[tuple[str, dict[str, Any]]]) -> list[str]:
    """A "model vs PCA (k components)" text table for each column whose metrics have ``curves``."""
    from vaekit.shape_metrics import comparison_rows

    tables = []
    for heading, values in columns:
        curves = values.get("curves")
        if not isinstance(curves, dict):
            continue
        head = ["metric", "model", "PCA", "data", "better"]
        rows = [
            [
                label,
                format_value(a, 4, missing="n/a"),
                format_value(b, 4, missing="n/a"),
                "" if ref is None else format_value(ref, 4),
            ]
            + [verdict if verdict != "pca" else "PCA"]
            for label, a, b, ref, verdict, _ in comparison_rows(curves)
        ]
        widths = [max(len(row[i]) for row in [head, *rows]) for i in range(len(head))]
        lines = ["  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip() for row in [head, *rows]]
        title = f"model vs PCA ({curves.get('components')} components), {heading}; {curves.get('n_samples')} samples each:"
        tables.append("\n".join([title, *lines]))
    return tables


def _parse_condition(model, text: str | None, info: dict[str, Any], n: int) -> Any:
    """One condition given on the command line, checked against the model's spec."""
    spec = model.condition
    if spec is None:
        if text is not None:
            raise UsageError("--condition: this model is unconditional; leave --condition out.")
        return None
    if text is None:
        return None
    if spec.kind == "onehot":
        names = info.get("label_names") or []
        if text in names:
            return names.index(text)
        try:
            label = int(text)
        except ValueError:
            shown = f" or one of {names}" if names else ""
            raise UsageError(f"--condition must be a class label 0..{spec.n_classes - 1}{shown}. Got {text!r} instead.") from None
        if not 0 <= label < spec.n_classes:
            raise UsageError(f"--condition must be a class label 0..{spec.n_classes - 1}. Got {label} instead.")
        return label
    try:
        values = [float(v) for v in text.split(",")]
    except ValueError:
        raise UsageError(f"--condition must be {spec.dim} comma-separated number(s). Got {text!r} instead.") from None
    if len(values) != spec.dim or not all(math.isfinite(v) for v in values):
        raise UsageError(f"--condition must be {spec.dim} finite comma-separated number(s). Got {text!r} instead.")
    return np.tile(np.asarray(values, dtype=np.float32), (n, 1))


def _need_condition(model, what: str) -> UsageError:
    spec = model.condition
    kind = f"onehot with {spec.n_classes} classes" if spec.kind == "onehot" else f"continuous of dimension {spec.dim}"
    return UsageError(f"--condition is required: this model is conditional ({kind}){what}.")


def _cmd_sample(args: argparse.Namespace, out: _Console) -> int:
    folder, model, config, info = _load_run(args.run)
    if args.n < 1:
        raise UsageError(f"-n must be an integer >= 1. Got {args.n} instead.")
    condition = _parse_condition(model, args.condition, info, args.n)
    if model.condition is not None and condition is None:
        raise _need_condition(model, "")
    picture = args.output is not None and Path(args.output).suffix.lower() in PICTURE_SUFFIXES
    if picture:
        _check_picture(model, args.output)
    samples = model.sample(args.n, condition, seed=args.seed, noise=args.noise).reshape(args.n, -1)  # CSV rows: (n, D)
    measured = _measured_properties(model, config, samples, condition)
    if picture:
        named = (runfolder.shape_condition_names(config["data"]) if config else "") or info.get("condition") or "condition"
        asked = f" at {named} = {args.condition}" if condition is not None else ""
        drawn = _write_picture(args.output, model, samples, title=f"{args.n} samples{asked}")
        shown = "" if drawn == args.n else f" (the picture shows the first {drawn})"
        out.say(f"wrote {args.n} samples to {args.output}{shown}")
        for line in measured:
            out.say(line)
        return 0
    _write_array(args.output, samples, info.get("columns") or [f"x{i}" for i in range(model.x_dim)])
    if args.output:
        out.say(f"wrote {args.n} samples to {args.output}")
        for line in measured:
            out.say(line)
    return 0


def _measured_properties(model, config: dict[str, Any] | None, samples: np.ndarray, condition: Any) -> list[str]:
    """For curves conditioned on shape properties: one line per property, asked against measured in the samples."""
    from vaekit import design

    names = runfolder.shape_condition_names(config["data"]) if config else ""
    if condition is None or not names or not design.is_curve_shape(model.x_shape):
        return []
    shapes = samples.reshape(len(samples), *model.x_shape)
    finite = np.isfinite(shapes).all(axis=(1, 2))
    if not finite.any():
        return ["no sample has finite coordinates: their shape properties cannot be measured"]
    measured = design.shape_condition(shapes[finite], names)  # (n, C)
    asked = np.asarray(condition, dtype=np.float64).reshape(len(samples), -1)[0]
    return [
        f"{name} of the samples (chord units): asked {asked[j]:.4g}, measured mean {measured[:, j].mean():.4g} "
        f"(min {measured[:, j].min():.4g}, max {measured[:, j].max():.4g})"
        for j, name in enumerate(design.property_names(names))
    ]


PICTURE_SUFFIXES = (".png", ".svg", ".pdf")


def _check_picture(model, path: str) -> None:
    """Refuse a picture of data that has none (a table), before any sampling."""
    from vaekit.plots import data_view

    shape = tuple(model.x_shape)
    if data_view(shape).kind == "table":
        raise UsageError(
            f"-o {path}: a picture needs image data (x_shape (H, W) or (1, H, W), or a perfect-square number of "
            f"columns >= 16) or curves (x_shape (P, 2)). Got a table of {model.x_dim} columns instead; "
            f"write the samples as numbers with -o {Path(path).with_suffix('.csv').name} (or .npy)."
        )


def _write_picture(path: str, model, samples: np.ndarray, *, title: str = "") -> int:
    """Draw samples (n, D) as :func:`vaekit.plots.pictures` into ``path`` (atomically); return the count drawn."""
    import matplotlib

    matplotlib.use("Agg")
    from vaekit.io import atomic_write_bytes
    from vaekit.plots import PICTURE_MAX, pictures

    fig = pictures(samples, x_shape=model.x_shape, title=title or f"{len(samples)} samples")
    buffer = io.BytesIO()
    fig.savefig(buffer, format=Path(path).suffix.lower()[1:], dpi=110)
    atomic_write_bytes(path, buffer.getvalue())
    return min(len(samples), PICTURE_MAX)


def _file_header(path: Path) -> list[str]:
    if not path.is_file():
        raise UsageError(f"file {path} does not exist.")
    if path.suffix.lower() == ".npy":
        try:
            array = np.load(path, mmap_mode="r", allow_pickle=False)
        except (ValueError, OSError, EOFError) as err:
            raise FileFormatError(f"{path} is not a readable .npy array file ({err}).") from None
        if array.ndim != 2:
            raise FileFormatError(f"{path} must hold a 2-D array (rows x columns). Got shape {array.shape} instead.")
        return [str(i) for i in range(array.shape[1])]
    try:
        with open(path, newline="", encoding="utf-8") as handle:
            first = next(csv.reader(handle), [])
    except (UnicodeDecodeError, csv.Error) as err:
        raise FileFormatError(f"{path} is not a readable UTF-8 CSV file ({err}).") from None
    return [h.strip() for h in first]


def _read_rows(path: Path, wanted: list[str], width: int, what: str, condition_column: str | None):
    """Read ``wanted`` columns (or, failing that, exactly ``width`` columns by position)."""
    from vaekit.data import load_table, looks_like_header

    header = _file_header(path)
    csv_header: bool | str = "auto"
    if path.suffix.lower() != ".npy" and header:
        # The run's own column names (even numbers, "0", "1" of a .npy run) make the first row a header.
        csv_header = all(c in header for c in wanted) or looks_like_header(header)
        if not csv_header:  # a first row of numbers is data: the columns are named as a headerless run names them
            header = [f"col{i}" for i in range(len(header))]
    if all(c in header for c in wanted):
        columns = wanted
    elif len([h for h in header if h != condition_column]) == width:
        columns = [h for h in header if h != condition_column]
    else:
        raise InputError(
            f"{path} must have the {what} columns {wanted} (or exactly {width} columns). Got columns {header} instead."
        )
    cond = condition_column if condition_column and condition_column in header else None
    return load_table(path, columns, cond, header=csv_header)


def _table_condition(model, table, info, condition_column, text, path) -> Any:
    given = _parse_condition(model, text, info, len(table.x))
    if model.condition is None or given is not None:
        return given
    if table.condition is None:
        raise _need_condition(model, f", and {path} has no column {condition_column!r}")
    if model.condition.kind == "onehot":
        codes = table.condition[:, 0].astype(np.int64)
        if table.label_names is not None:  # text labels: map this file's names to the training codes
            names = info.get("label_names") or []
            unknown = sorted(set(table.label_names) - set(names))
            if unknown:
                raise InputError(f"condition column {condition_column!r} of {path} has unknown labels {unknown}; known: {names}.")
            codes = np.array([names.index(table.label_names[c]) for c in codes])
        return codes
    return table.condition


def _cmd_encode(args: argparse.Namespace, out: _Console) -> int:
    folder, model, config, info = _load_run(args.run)
    columns = info.get("columns") or [f"x{i}" for i in range(model.x_dim)]
    condition_column = info.get("condition") if config and config["data"]["path"] else None
    path = Path(args.data)
    table = _read_rows(path, columns, model.x_dim, "data", condition_column)
    condition = _table_condition(model, table, info, condition_column, args.condition, path)
    runs.check_log_support(model.likelihood, table, f"encode {path}", trained=True)
    qz = model.encode(table.x, condition)
    z = posterior_mean(qz).detach().cpu().numpy()
    header = [f"z{i}" for i in range(model.z_dim)]
    if args.std:
        try:
            std = qz.stddev
        except NotImplementedError:
            kind = type(qz).__name__
            raise UsageError(f"--std needs a posterior with a known standard deviation; this model's is a {kind}.") from None
        z = np.concatenate([z, std.detach().cpu().numpy()], axis=1)
        header += [f"z{i}_std" for i in range(model.z_dim)]
    _write_array(args.output, z, header)
    if args.output:
        out.say(f"wrote {len(z)} codes to {args.output}")
    return 0


def _cmd_decode(args: argparse.Namespace, out: _Console) -> int:
    folder, model, config, info = _load_run(args.run)
    path = Path(args.codes)
    table = _read_rows(path, [f"z{i}" for i in range(model.z_dim)], model.z_dim, "latent", None)
    condition = _parse_condition(model, args.condition, info, len(table.x))
    if model.condition is not None and condition is None:
        raise _need_condition(model, "")
    import torch

    with torch.no_grad():
        x = model.decode(table.x, condition).mean.cpu().numpy()
    _write_array(args.output, x, info.get("columns") or [f"x{i}" for i in range(model.x_dim)])
    if args.output:
        out.say(f"wrote {len(x)} decoded rows to {args.output}")
    return 0


def _cmd_report(args: argparse.Namespace, out: _Console) -> int:
    from vaekit.report import redraw_figures, write_report

    if args.units is not None:
        figures = redraw_figures(args.run, units=args.units)
        out.say(f"redrew {len(figures)} figures in {args.units} units")
    path = write_report(runs.require_run(args.run))
    out.say(f"wrote {path}")
    return 0


def _sweep_grid(items: Sequence[str]) -> dict[str, list[Any]]:
    from vaekit.sweep import SWEEPABLE

    grid: dict[str, list[Any]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        if not sep or key not in SWEEPABLE:
            raise UsageError(f"--set must be KEY=V1,V2,... with KEY one of {', '.join(SWEEPABLE)}. Got {item!r} instead.")
        if key in grid:
            raise UsageError(f"--set names {key} twice.")
        kind = int if key == "seed" else float
        try:
            grid[key] = [kind(v) for v in values.split(",")]
        except ValueError:
            raise UsageError(f"--set {key} needs comma-separated {kind.__name__} values. Got {values!r} instead.") from None
    return grid


def _cmd_sweep(args: argparse.Namespace, out: _Console) -> int:
    over = _sweep_grid(args.set)
    config = resolve_config(args)
    target = Path(args.out)
    runs.check_out(target, force=args.force)  # the command line's wording of runs.sweep's own checks
    if config["training"]["objective"] != "elbo":
        raise UsageError("sweep trains with the ELBO objective; --objective iwae is not supported here.")
    display = _display(args.quiet, config["training"]["epochs"], name="sweep", loss="")
    try:
        result = runs.sweep(config, over, target, force=args.force, progress=None if display is None else display.epoch)
    finally:
        if display is not None:
            display.close()
    out.say(f"{result.format_table()}\ntrained {len(result.models)} models in {result.seconds:.1f} s; wrote {target}/")
    for why in result.chosen.values():  # as train says them: log columns, batch size
        out.say(f"note: {why}")
    return 0


def _cmd_convert(args: argparse.Namespace, out: _Console) -> int:
    from vaekit.streaming import csv_to_npy

    target = Path(args.npy)
    if target.exists() and not args.force:
        raise UsageError(f"{target} exists; pass --force to replace it. Got no --force instead.")
    rows, columns = csv_to_npy(args.csv, target)
    out.say(f"wrote {target}: {rows} rows x {len(columns)} columns (float32; columns: {_short_list(columns)})")
    return 0


def _short_list(names: Sequence[str], keep: int = 3) -> str:
    """'a, b, c' or 'a, b, c, ..., z (N in all)' for long lists."""
    if len(names) <= 2 * keep:
        return ", ".join(names)
    return f"{', '.join(names[:keep])}, ..., {names[-1]} ({len(names)} in all)"


COMMANDS = {
    "demo": _cmd_demo,
    "train": _cmd_train,
    "evaluate": _cmd_evaluate,
    "sample": _cmd_sample,
    "encode": _cmd_encode,
    "decode": _cmd_decode,
    "report": _cmd_report,
    "sweep": _cmd_sweep,
    "convert": _cmd_convert,
}


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _show_warning(message, category, filename, lineno, file=None, line=None) -> None:
    # One line per warning, like the errors; --debug keeps Python's own format with the source line.
    print(f"warning: {_one_line(message)}", file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``vaekit`` command line; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv[:1] == ["--"]:  # left by some Python versions' argparse when torchrun passes "-- ARGS" on (see _launch)
        argv = argv[1:]
    debug = "--debug" in argv
    with warnings.catch_warnings():
        if not debug:
            warnings.showwarning = _show_warning
        return _main(argv, debug)


def _main(argv: list[str], debug: bool) -> int:
    try:
        parser = build_parser()
        args = parser.parse_args(argv)
        args.argv = argv
        if args.command is None:
            parser.print_help()
            return 2
        return COMMANDS[args.command](args, _Console(args.quiet))
    except UsageError as err:
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except TrainingError as err:
        if debug:
            raise
        print(f"error: training failed: {_one_line(err)}", file=sys.stderr)
        return 1
    except RunInterrupted as err:
        print(str(err), file=sys.stderr)
        return 130
    except VaekitError as err:  # bad input found by the library: the message names the problem
        if debug:
            raise
        print(f"error: {_one_line(err)}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        return 0  # e.g. `vaekit sample ... | head`
    except OSError as err:  # a path that cannot be read or written: the user's to fix
        if debug:
            raise
        where = f"{err.filename}: " if err.filename else ""
        print(f"error: {where}{err.strerror or _one_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception as err:  # noqa: BLE001 - the last line of defence: a short message, not a traceback
        if debug:
            raise
        print(f"error: unexpected {type(err).__name__}: {_one_line(err)} (rerun with --debug for the traceback)", file=sys.stderr)
        return 1
