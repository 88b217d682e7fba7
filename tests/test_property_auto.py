"""`model: auto`: gbt and cgcnn fitted on the same split, the better on validation kept."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_property_data import make_crystals
from test_property_imbalanced import imbalanced_perovskites

from matloop.cli import main
from matloop.errors import ConfigError
from matloop.property import (
    PropertyConfig,
    fit_auto,
    load_model,
    make_model,
    split,
    write_extxyz,
)
from matloop.property.estimators import validation_score

FAST = {
    "cgcnn": {"epochs": 4, "patience": 4, "n_members": 1, "batch_size": 16, "mc_samples": 2},
    "gbt": {"max_iter": 40},
}


def test_auto_keeps_the_better_family_and_saves_the_choice(tmp_path):
    data = imbalanced_perovskites()
    model = fit_auto(data, params=FAST, target="is_metal", task="classification", seed=0)
    sel = model.selection_
    assert sel["metric"] == "roc_auc" and set(sel["validation"]) == {"gbt", "cgcnn"}
    best = max(sel["validation"].values())
    assert sel["validation"][sel["chosen"]] == best and model.kind == sel["chosen"]
    val = data.subset([data.ids.index(i) for i in model.val_ids_])
    assert validation_score(model, val) == ("roc_auc", pytest.approx(best))
    model.save(tmp_path / "m")
    back = load_model(tmp_path / "m")
    assert back.selection_ == json.loads(json.dumps(sel))
    np.testing.assert_allclose(back.predict_proba(val), model.predict_proba(val), atol=1e-6)


def test_auto_regression_uses_validation_mae_only():
    data = make_crystals(n_strain=2)
    tr, te = split(data, "random", 0.2, seed=1)
    train, test = data.subset(tr), data.subset(te)
    model = fit_auto(train, params=FAST, target="volume_per_atom", seed=0)
    sel = model.selection_
    assert sel["metric"] == "mae" and sel["target"] == "volume_per_atom"
    assert sel["validation"][sel["chosen"]] == min(sel["validation"].values())
    assert not set(model.train_ids_ + model.val_ids_) & set(test.ids)  # test set untouched
    # both candidates saw the same validation part
    gbt = make_model("gbt", target="volume_per_atom", params=FAST["gbt"], seed=0).fit(train)
    assert gbt.val_ids_ == model.val_ids_


def test_auto_is_the_default_and_the_cli_reports_the_choice(tmp_path, capsys):
    assert PropertyConfig().model == "auto"
    with pytest.raises(ConfigError, match="fit_auto"):
        make_model("auto", target="y")
    data = tmp_path / "perov.extxyz"
    write_extxyz(imbalanced_perovskites(n_strain=1), data)
    config = tmp_path / "fast.yaml"
    config.write_text(
        "cgcnn:\n  epochs: 3\n  n_members: 1\n  mc_samples: 2\n  batch_size: 16\n"
        "gbt:\n  max_iter: 30\n"
    )
    out = tmp_path / "cls"
    args = ["property", "fit", "--data", str(data), "--target", "is_metal"]
    args += ["--task", "classification", "--config", str(config), "--out", str(out)]
    assert main(args) == 0
    text = capsys.readouterr().out
    meta = json.loads((out / "model.json").read_text())
    sel = meta["selection"]
    assert f"model auto: chose {sel['chosen']} by validation roc_auc" in text
    assert meta["kind"] == sel["chosen"] and set(sel["validation"]) == {"gbt", "cgcnn"}
    report = json.loads((out / "report.json").read_text())
    assert report["model_selection"]["chosen"] == sel["chosen"]
    assert "model: auto chose" in (out / "report.html").read_text()
