"""Property-based tests of the command line: any argument list ends in exit 0 or in exit 2 with a
one-line ``error:`` message; never a traceback (exit 1) and never a hang."""

from __future__ import annotations

import contextlib
import io
import itertools
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from vaekit import cli

_EXAMPLES = int(os.environ.get("VAEKIT_FUZZ_EXAMPLES", "0"))


def fuzz_settings(default: int) -> settings:
    return settings(
        max_examples=_EXAMPLES or default,
        deadline=None,
        derandomize=not _EXAMPLES,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
    )


# Every run is small: at most 1 epoch on at most 60 points with cheap evaluation settings.
CHEAP = ["-q", "--eval-k", "2", "--eval-n-samples", "40", "--eval-quadrature-grid", "12", "--eval-permutations", "2"]
NUMBERS = ["0", "1", "-1", "2.5", "nan", "inf", "-inf", "abc", "", "1e400", "0x10", " 3"]
TRAIN_OPTIONS = {
    "--data": ["ring", "moons", "circles", "swiss_roll", "pinwheel", "nope", "/no/such/file.csv", "BAD_CSV", "GOOD_CSV", ""],
    "--condition": ["label:onehot", "radius:continuous", "label:continuous", "radius:onehot", "label", ":", "x:y", "a:onehot"],
    "--n": ["60", "1", "0", "-5", "abc", "2.5"],
    "--epochs": ["1", "0", "-2", "x", "1.5"],
    "--z-dim": ["1", "2", "3", "0", "-1", "q"],
    "--hidden": ["4", "4,4", "0", "a,b", "-3", ",", "4,,4"],
    "--variance": ["0.1", "learned", "per_point", "0", "-1", "nan", "inf", "huge"],
    "--likelihood": ["gaussian", "bernoulli", "cauchy"],
    "--lr": NUMBERS,
    "--beta": NUMBERS,
    "--batch-size": ["16", "0", "-1", "x"],
    "--val-fraction": ["0", "0.2", "1", "1.5", "-0.1", "nan"],
    "--free-bits": NUMBERS,
    "--grad-clip": NUMBERS,
    "--objective": ["elbo", "iwae", "mse"],
    "--iwae-k": ["2", "0", "-1", "x"],
    "--option": ["modes=6", "radius=2", "modes=0", "modes=x", "bogus=1", "noequals", "std=-1"],
    "--columns": ["a,b", "a", "zz", ",", ""],
    "--config": ["/no/such.toml", "BAD_TOML"],
}


@pytest.fixture(scope="module")
def files(tmp_path_factory) -> dict[str, str]:
    folder = tmp_path_factory.mktemp("fuzzfiles")
    (folder / "bad.csv").write_text("a,b\n1,x\n2\n")
    (folder / "good.csv").write_text("a,b,g\n" + "".join(f"{i % 7},{i % 5},{i % 3}\n" for i in range(60)))
    (folder / "bad.toml").write_text("[model\nz_dim = ")
    return {"BAD_CSV": str(folder / "bad.csv"), "GOOD_CSV": str(folder / "good.csv"), "BAD_TOML": str(folder / "bad.toml")}


def run_cli(argv: list[str]) -> tuple[int, str]:
    err = io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(io.StringIO()):
        try:
            code = cli.main(argv)
        except SystemExit as exit_:  # argparse's own usage errors
            code = exit_.code
    return code, err.getvalue()


def check_outcome(argv: list[str], code: int, err: str) -> None:
    assert code in (0, 2), f"exit {code} for {argv}:\n{err}"
    if code == 2:
        assert "Traceback" not in err, f"traceback for {argv}:\n{err}"
        assert "error:" in err, f"no error message for {argv}:\n{err}"


_counter = itertools.count()
OUTCOMES: list[int] = []


@fuzz_settings(40)
@given(
    options=st.dictionaries(st.sampled_from(sorted(TRAIN_OPTIONS)), st.none(), max_size=6).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(TRAIN_OPTIONS[k]) for k in keys})
    )
)
def test_train_arguments_never_crash(files, tmp_path, options):
    argv = ["train", *CHEAP, "--out", str(tmp_path / f"run{next(_counter)}")]
    options.setdefault("--n", "60")
    options.setdefault("--epochs", "1")
    options.setdefault("--hidden", "4")
    if options["--n"] not in ("60", "1") or options["--epochs"] not in ("1",):
        options["--data"] = options.get("--data", "ring")  # invalid sizes still reach the parser
    for key, value in options.items():
        argv += [key, files.get(value, value)]
    code, err = run_cli(argv)
    check_outcome(argv, code, err)
    OUTCOMES.append(code)


def test_train_fuzzing_reached_both_outcomes():
    # Runs after the fuzzer in this module: it must have trained some runs and refused others.
    assert 0 in OUTCOMES and 2 in OUTCOMES, OUTCOMES


@pytest.fixture(scope="module")
def trained_run(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("fuzzrun") / "cvae"
    code, err = run_cli(
        [
            "train",
            "--data",
            "ring",
            "--condition",
            "label:onehot",
            "--n",
            "80",
            "--epochs",
            "1",
            "--hidden",
            "4",
            *CHEAP,
            "--out",
            str(out),
        ]
    )
    assert code == 0, err
    return out


USE_OPTIONS = {
    "-n": ["5", "0", "-1", "x", "2.5", "1e9"],
    "--condition": ["3", "0", "8", "-1", "2.5", "x", "nan", ""],
    "-o": ["OUT.csv", "OUT.npy", "OUT.txt", "OUT", "/no/such/dir/out.csv", "OUT.png"],
    "--units": ["data", "standardized", "x"],
    "--seed": ["0", "-1", "x"],
}


@fuzz_settings(40)
@given(
    command=st.sampled_from(["sample", "encode", "decode", "evaluate", "report", "bogus"]),
    folder=st.sampled_from(["RUN", "/no/such/run", "BAD_CSV"]),
    options=st.dictionaries(st.sampled_from(sorted(USE_OPTIONS)), st.none(), max_size=3).flatmap(
        lambda keys: st.fixed_dictionaries({k: st.sampled_from(USE_OPTIONS[k]) for k in keys})
    ),
)
def test_commands_on_a_run_never_crash(files, trained_run, tmp_path, command, folder, options):
    argv = [command, str(trained_run) if folder == "RUN" else files.get(folder, folder)]
    if command in ("encode", "decode"):
        argv.append(files["GOOD_CSV"])
    if options.get("-n") == "1e9":
        options["-n"] = "x"  # a valid huge n would only be slow, not wrong
    for key, value in options.items():
        if key == "-o":
            value = str(tmp_path / value.replace("OUT", f"out{next(_counter)}")) if value.startswith("OUT") else value
        argv += [key, value]
    if command == "evaluate":
        argv += ["--eval-k", "2", "--eval-n-samples", "40", "--eval-quadrature-grid", "12", "--eval-permutations", "2"]
    code, err = run_cli(argv)
    check_outcome(argv, code, err)


@fuzz_settings(100)
@given(
    st.lists(
        st.sampled_from(
            [
                "train",
                "sample",
                "--epochs",
                "-n",
                "--data",
                "x",
                "--",
                "-",
                "--force",
                "--quiet",
                "ring",
                "--nope",
                "=",
                "-h2",
                "report",
                "--condition",
            ]
        ),
        max_size=6,
    )
)
def test_arbitrary_token_lists_never_crash(tokens):
    if "train" in tokens or "--data" in tokens:  # keep random token soup from starting real training
        tokens = [t for t in tokens if t not in ("train",)] + ["--epochs", "x"]
    code, err = run_cli(tokens)
    assert code in (0, 2), f"exit {code} for {tokens}:\n{err}"
    assert "Traceback" not in err
