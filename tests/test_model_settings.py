"""The [model] section of run configs and the model flags of `vaekit train`, derived from the registries."""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

import numpy as np
import pytest

import vaekit as vk
from vaekit import cli, model_settings, runs
from vaekit.configs import SPECS, register_spec
from vaekit.distributions import StandardNormal
from vaekit.errors import InputError, InputTypeError
from vaekit.models import MODELS

# The [model] section vaekit 0.1 wrote into every config.toml (all keys, whatever the choices).
V01_MODEL = {
    "z_dim": 2,
    "hidden": [128, 128],
    "activation": "relu",
    "likelihood": "gaussian",
    "variance": 0.1,
    "min_variance": 1e-4,
    "standardize": False,
    "condition_embed": 16,
    "prior": "standard_normal",
    "prior_components": 10,
}


def test_defaults_are_the_lecture_recipe_with_only_the_keys_that_apply():
    section = runs.default_config()["model"]
    assert section == {
        "type": "vae",
        "z_dim": 2,
        "hidden": [128, 128],
        "activation": "relu",
        "likelihood": "gaussian",
        "variance": 0.1,
        "min_variance": 1e-4,
        "constraint": "none",
        "df": "none",
        "standardize": False,
        "standardize_scale": "column",
        "prior": "standard_normal",
        "x_shape": [],
        "posterior": "diagonal",
        "encoder": "mlp",
        "decoder": "",
    }


def test_a_vaekit_0_1_model_section_still_reads_and_keeps_its_meaning():
    config = runs.validate_config({"model": V01_MODEL})
    assert config["model"] == runs.default_config()["model"]
    with_condition = runs.validate_config({"data": {"condition": "radius", "condition_type": "continuous"}, "model": V01_MODEL})
    assert with_condition["model"]["condition_embed"] == 16


def test_keys_follow_the_choices():
    config = runs.validate_config({"model": {"prior": "mixture", "prior_components": 3, "likelihood": "bernoulli"}})["model"]
    assert (config["prior_components"], config["prior_init_scale"]) == (3, 1.0)
    assert "variance" not in config and "min_variance" not in config


@pytest.mark.parametrize(
    ("model", "message"),
    [
        (
            {"prior_components": 3},
            # Other learned priors (vamp) share the key, so the message goes on to name them too.
            "cfg: [model] prior_components = 3 has no effect with these settings: it applies when prior = 'mixture'",
        ),
        (
            {"likelihood": "bernoulli", "variance": 1.0},
            "cfg: [model] variance = 1.0 has no effect with these settings: it applies when likelihood = 'gaussian'. "
            "Remove it or change that setting.",
        ),
        (
            {"condition_embed": 4},
            "cfg: [model] condition_embed = 4 has no effect with these settings: it applies when the data has a "
            "continuous condition. Remove it or change that setting.",
        ),
        ({"z_dim": 0}, "cfg: [model] z_dim must be an integer >= 1. Got 0 instead."),
        ({"hidden": [8, 0]}, "cfg: [model] hidden[i] must be an integer >= 1. Got 0 instead."),
        ({"variance": -1.0}, "cfg: [model] Gaussian.variance must be a finite number > 0. Got -1.0 instead."),
        ({"df": 1.5}, "cfg: [model] Gaussian.df must be 'none', 'learned' or a finite number > 2. Got 1.5 instead."),
        (
            {"prior": "mixture", "prior_components": 0},
            "cfg: [model] MixturePrior.components must be an integer >= 1. Got 0 instead.",
        ),
        ({"x_shape": [4, 0]}, "cfg: [model] x_shape[i] must be an integer >= 1. Got 0 instead."),
        ({"type": "gan"}, f"cfg: [model] type must be one of {list(model_settings.model_kinds())}. Got 'gan' instead."),
        ({"encoder": "conv9d"}, "cfg: [model] encoder must be one of"),
    ],
)
def test_bad_model_settings_name_the_key(model, message):
    with pytest.raises(InputError) as err:
        runs.validate_config({"model": model}, source="cfg")
    assert str(err.value).startswith(message)


def test_types_are_checked_against_every_kind():
    with pytest.raises(InputTypeError, match=r"^cfg: \[model\] prior_components must be an integer\. Got '3' instead\.$"):
        runs.validate_config({"model": {"prior": "mixture", "prior_components": "3"}}, source="cfg")


@pytest.mark.parametrize(("name", "key"), [(n, k) for n, cls in sorted(MODELS.items()) for k in cls.examples()])
def test_settings_round_trip_every_registry_example(name, key):
    arch = MODELS[name].examples()[key]
    settings = model_settings.settings_of(arch, MODELS[name].kind)
    condition = arch.condition
    size = None if condition is None else getattr(condition, "n_classes", getattr(condition, "dim", None))
    kind = None if condition is None else condition.kind
    assert model_settings.complete(settings, kind, "x") == settings  # complete and checked as it stands
    rebuilt = model_settings.architecture(
        settings, x_dim=arch.x_dim, condition=model_settings.condition(settings, kind, size=size)
    )
    # A likelihood's data-given fields (log columns: [data] log_columns) are not [model] settings:
    # the settings rebuild them at their defaults, and vaekit.runs.build_model sets them from the data.
    given = getattr(arch.likelihood, "FROM_DATA", ())
    defaults = {f.name: f.default for f in dataclasses.fields(arch.likelihood) if f.name in given}
    assert rebuilt == dataclasses.replace(arch, likelihood=dataclasses.replace(arch.likelihood, **defaults))


def test_x_shape_must_match_the_data_columns():
    config = runs.validate_config({"data": {"name": "ring"}, "model": {"x_shape": [3, 2]}})
    data = runs.load_data(config)
    with pytest.raises(InputError, match=r"^x_shape \[3, 2\] has 6 values per point, but the data has 2 columns\.$"):
        runs.build_model(config, data)


def test_x_shape_reaches_the_model(tmp_path):
    path = tmp_path / "curves.npy"
    np.save(path, np.random.default_rng(0).normal(size=(50, 8)).astype(np.float32))
    config = runs.validate_config({"data": {"path": str(path)}, "model": {"x_shape": [4, 2], "hidden": [8]}})
    model = runs.build_model(config, runs.load_data(config))
    assert model.x_shape == (4, 2) and model.sample(3, seed=0).shape == (3, 4, 2)


@dataclasses.dataclass(frozen=True)
class _WidePrior(StandardNormal):
    """A test-only prior with one parameter, to show that a new spec needs no settings code."""

    width: float = dataclasses.field(default=2.0, metadata={"help": "test-only width"})
    kind: ClassVar[str] = "wide_test"

    def to_config(self) -> dict[str, Any]:
        return {"type": self.kind, "width": self.width}


@pytest.fixture
def wide_prior():
    register_spec("prior")(_WidePrior)
    yield _WidePrior
    del SPECS["prior"][_WidePrior.kind]


def test_a_new_spec_gets_its_settings_and_flags_with_no_further_code(wide_prior):
    assert model_settings.all_settings()["prior_width"].default == 2.0
    args = cli.build_parser().parse_args(["train", "--prior", "wide_test", "--prior-width", "3", "--epochs", "1"])
    config = cli.resolve_config(args)
    assert (config["model"]["prior"], config["model"]["prior_width"]) == ("wide_test", 3.0)
    model = runs.build_model(config, runs.load_data(config))
    assert model.prior_spec == _WidePrior(width=3.0)


def test_cli_flags_are_the_settings():
    parser = cli.build_parser()
    train = next(a for a in parser._subparsers._group_actions[0].choices["train"]._actions if "--x-shape" in a.option_strings)
    assert train.help.startswith("shape of one data point")
    args = parser.parse_args(["train", "--model", "vae", "--x-shape", "1,2", "--decoder", "mlp"])
    config = cli.resolve_config(args)
    assert (config["model"]["x_shape"], config["model"]["decoder"]) == ([1, 2], "mlp")
    assert vk.VAE(x_shape=(1, 2)).x_shape == (1, 2)
