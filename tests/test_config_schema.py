"""The typed configuration tree: family parameters as a discriminated union, checked at load."""

from __future__ import annotations

import subprocess
import sys

import pytest
import yaml

from matloop.active.config import ActiveLearningConfig
from matloop.cli import main
from matloop.errors import ConfigError
from matloop.models import FAMILIES, get_family
from matloop.models.params import BPNNParams, PaiNNParams
from matloop.training.config import FAMILY_CONFIGS, ModelConfig, TrainConfig, load_train_config
from matloop.utils.config import parse_config

AL_BASE = {"reference": {"calculator": "emt"}, "initial": {"structures": "start.xyz"}}


def test_config_modules_import_without_torch():
    code = (
        "import sys, matloop.training.config, matloop.active.config, matloop.models.params; "
        "print(sorted(m for m in ('torch', 'ase.md', 'matloop.models.base') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_union_variant_per_family_round_trips(family):
    if not FAMILIES[family].installed:
        pytest.skip(f"{family} needs {FAMILIES[family].requires}")
    assert get_family(family).Params is FAMILIES[family].params
    config = TrainConfig(model=ModelConfig(family=family))
    assert type(config.model) is FAMILY_CONFIGS[family]
    assert isinstance(config.model.params, FAMILIES[family].params)
    dumped = yaml.safe_load(yaml.safe_dump(config.model_dump(mode="json")))
    assert TrainConfig.model_validate(dumped) == config


def test_saved_config_shape_still_loads(tmp_path):
    path = tmp_path / "config.yaml"
    path.write_text("model:\n  family: bpnn\n  params:\n    hidden: [8]\ntraining:\n  seed: 3\n")
    config = load_train_config(path)
    assert isinstance(config.model.params, BPNNParams) and config.model.params.hidden == [8]
    assert config.model.params.descriptor.cutoff == 5.0  # the default filled in, typed
    params = config.model.family_params()
    assert params == config.model.params and params is not config.model.params
    assert TrainConfig.model_validate({"model": {"params": {"cutoff": 4.0}}}).model.family == "ace"


@pytest.mark.parametrize(
    "model, words",
    [
        (
            {"family": "bpnn", "params": {"hiden": [3]}},
            "unknown key 'model.params.hiden' (valid keys here: activation, descriptor, hidden)",
        ),
        (
            {"family": "painn", "params": {"feature": 3}},
            "unknown key 'model.params.feature' (valid keys here: activation, cutoff, features,",
        ),
        ({"family": "bpnn", "params": {"hidden": [8, 0]}}, "model.params.hidden.1: Input should"),
        (
            {"family": "bpnn", "params": {"descriptor": {"cutof": 3}}},
            "unknown key 'model.params.descriptor.cutof' (valid keys here: angular_cutoff,",
        ),
        ({"family": "no_such_family"}, "model: unknown model family 'no_such_family'; available"),
        ({"family": ["ace"]}, "model: model family must be a name"),
        ({"colour": "red"}, "unknown key 'model.colour' (valid keys here: family, params)"),
    ],
)
def test_bad_model_section_is_one_line_naming_the_key(model, words):
    with pytest.raises(ConfigError) as info:
        parse_config({"model": model}, TrainConfig, "t.yaml")
    message = str(info.value)
    assert message.startswith("t.yaml: ") and words in message and "\n" not in message


def test_model_config_builds_the_family_variant():
    model = ModelConfig(family="painn", params={"features": 8})
    assert isinstance(model.params, PaiNNParams) and model.params.features == 8
    model.params = {"layers": 1}  # assignments are validated too
    assert isinstance(model.params, PaiNNParams) and model.params.layers == 1
    with pytest.raises(ValueError, match="layers"):
        model.params = {"layers": 0}
    with pytest.raises(ConfigError, match="unknown model family 'nope'"):
        ModelConfig(family="nope")
    assert type(ModelConfig.model_validate({"family": "bpnn"})) is FAMILY_CONFIGS["bpnn"]


def test_al_training_options_are_typed_with_the_committee_family():
    cfg = parse_config(
        {
            **AL_BASE,
            "model": {
                "family": "bpnn",
                "train": {"model": {"params": {"hidden": [8]}}, "training": {"max_epochs": 3}},
            },
        },
        ActiveLearningConfig,
        "al.yaml",
    )
    train = cfg.model.train
    assert isinstance(train, TrainConfig) and train.model.family == "bpnn"
    assert train.model.params.hidden == [8] and train.training.max_epochs == 3
    assert cfg.model.train_config() == train and cfg.model.train_config() is not train
    default = parse_config({**AL_BASE, "model": {"family": "kernel"}}, ActiveLearningConfig, "x")
    assert default.model.train.model.family == "kernel"


@pytest.mark.parametrize(
    "model, words",
    [
        ({"family": "bpnn", "train": {"model": {"family": "ace"}}}, "train.model.family is 'ace'"),
        ({"family": "bpnn", "train": {"training": {"epochz": 1}}}, "'model.train.training.epochz'"),
        (
            {"family": "kernel", "train": {"model": {"params": {"hidden": [8]}}}},
            "unknown key 'model.train.model.params.hidden' (valid keys here: delta, descriptor,",
        ),
        ({"family": "no_such_family"}, "model.family: unknown model family 'no_such_family'"),
    ],
)
def test_bad_al_training_options_fail_at_load(model, words):
    with pytest.raises(ConfigError) as info:
        parse_config({**AL_BASE, "model": model}, ActiveLearningConfig, "al.yaml")
    assert words in str(info.value) and str(info.value).count("unknown model family") <= 1


# every config file a user writes: (kind, a valid body, a body with one misspelled key, the key)
FILES = [
    ("train", "training: {max_epochs: 3}\n", "training: {max_epoch: 3}\n", "training.max_epoch"),
    ("space", "components: {SiO2: [0, 100]}\n", "components: {SiO2: [0, 100]}\ntotl: 1\n", "totl"),
    (
        "report",
        "thresholds: {max_force_mae_ev_per_a: 0.1}\n",
        "settings: {nve_p: 1}\n",
        "settings.nve_p",
    ),
    ("property", "model: gbt\n", "gbt: {max_itr: 3}\n", "gbt.max_itr"),
]


@pytest.mark.parametrize("kind, good, bad, key", FILES, ids=[f[0] for f in FILES])
def test_config_validate_every_kind_with_one_loader(tmp_path, capsys, kind, good, bad, key):
    path = tmp_path / f"{kind}.yaml"
    path.write_text(good)
    args = ["config", "validate", str(path), "--kind", kind]
    assert main(args) == 0 and f"valid {kind} config" in capsys.readouterr().out
    if kind != "property":  # auto-detected from the keys
        assert main(args[:3]) == 0 and f"valid {kind} config" in capsys.readouterr().out
    for text, words in (
        (bad, f"unknown key '{key}' (valid keys here: "),
        ("a: [1,\n", "malformed YAML"),
        ("- 1\n", "expected a mapping"),
    ):
        path.write_text(text)
        assert main(args) == 1
        err = capsys.readouterr().err
        assert err.startswith(f"error: {path}") and words in err and len(err.splitlines()) == 1
    assert main(["config", "validate", str(tmp_path / "none.yaml"), "--kind", kind]) == 1
    assert "not found" in capsys.readouterr().err


def test_left_out_force_weight_is_the_familys_and_follows_a_family_change():
    """ace's default force weight (0.005) is its own; a config switched to another family
    (as `matloop train --model` does) takes that family's default, an explicit one is kept."""
    from matloop.models import FAMILIES
    from matloop.training.config import ModelConfig, TrainConfig

    assert FAMILIES["ace"].force_weight == 0.005
    assert FAMILIES["bpnn"].force_weight == 0.02
    assert TrainConfig().training.loss.forces == 0.005
    assert TrainConfig.model_validate({"model": {"family": "bpnn"}}).training.loss.forces == 0.02
    switched = TrainConfig()
    switched.model = ModelConfig(family="bpnn")
    switched.training.max_time = 5.0
    again = switched.revalidated()
    assert (again.training.loss.forces, again.training.max_time) == (0.02, 5.0)
    explicit = TrainConfig.model_validate({"training": {"loss": {"forces": 0.1}}})
    explicit.model = ModelConfig(family="bpnn")
    assert explicit.revalidated().training.loss.forces == 0.1


def test_a_fit_given_another_familys_config_uses_its_own_left_out_force_weight():
    """`KernelPotential.fit(train, valid, TrainConfig())` (an ace config) fits with the kernel's
    0.02; an explicit weight is used as given."""
    from matloop.models import family_loss
    from matloop.training.config import TrainConfig

    assert family_loss(TrainConfig(), "kernel").forces == 0.02
    assert family_loss(TrainConfig(), "ace").forces == 0.005
    explicit = TrainConfig.model_validate({"training": {"loss": {"forces": 0.1}}})
    assert family_loss(explicit, "kernel").forces == 0.1


def test_template_writes_the_familys_force_weight(tmp_path):
    from matloop.training.config import load_train_config, train_config_template

    for family, weight in (("ace", 0.005), ("bpnn", 0.02)):
        path = tmp_path / f"{family}.yaml"
        path.write_text(train_config_template(family))
        assert load_train_config(path).training.loss.forces == weight
