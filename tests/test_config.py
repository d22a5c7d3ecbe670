"""Config: defaults, YAML + overrides, one-line errors, every shipped config loads."""
from pathlib import Path

import pytest

from framegan.config import ConfigError, ZInject, from_dict, load_config, resume_conflicts, to_dict, to_yaml
from framegan.train import main as train_main

CONFIGS = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))


def test_defaults_and_overrides():
    cfg = load_config(None, ["model.z_inject=add", "train.steps=7", "loss.adv_weight=0.5"])
    assert cfg.model.z_inject is ZInject.add and cfg.train.steps == 7 and cfg.loss.adv_weight == 0.5
    assert cfg.data.context == 4  # untouched default


def test_yaml_then_overrides(tmp_path):
    p = tmp_path / "x.yaml"
    p.write_text("train:\n  steps: 11\nmodel:\n  width: 8\n")
    cfg = load_config(p, ["train.steps=12"])
    assert (cfg.train.steps, cfg.model.width, cfg.run.name) == (12, 8, "x")


@pytest.mark.parametrize("overrides, words", [
    (["model.nope=1"], "nope"),
    (["train.steps=abc"], "train.steps"),
    (["model.z_inject=sideways"], "z_inject"),
    (["model.z_dim=0", "model.z_classes=0", "loss.diversity_weight=1"], "diversity_weight"),
    (["model.z_dim=0", "model.z_classes=0", "loss.variety_k=2"], "variety_k"),
    (["model.z_classes=1"], "z_classes"),
    (["model.action_history=0"], "model.action_history"),
    (["data.context=2", "model.copy_frames=3"], "model.copy_frames must be -1 (all) or in 1..data.context (2)"),
    (["model.copy_frames=0"], "model.copy_frames"),
    (["data.context=2", "model.actions=4", "model.action_history=3"], "1..data.context (2)"),
    (["loss.adv_weight=0", "loss.l1_weight=0"], "nothing to train"),
    (["data.context=0"], "data.context"),
    (["data.key_change_repeat=0"], "data.key_change_repeat must be >= 1"),
    (["justakey"], "key=value"),
    (["train.seed=-1"], "train.seed must be in 0..2147483647, got -1"),
    (["train.seed=4294967296"], "train.seed must be in 0..2147483647"),
    (["train.beta1=2"], "train.beta1 must be in [0, 1), got 2.0"),
    (["train.beta2=-1"], "train.beta2 must be in [0, 1)"),
    (["train.val_batches=-1"], "train.val_batches must be >= 1"),
    (["train.video_frames=0"], "train.video_frames must be >= 1"),
    (["model.d_backbone=transformer", "model.d_heads=3"], "model.d_heads=3 must divide"),
    (["loss.gdl_alpha=0"], "loss.gdl_alpha must be > 0"),
    (["data.num_workers=-1"], "data.num_workers must be >= 0"),
    (["train.lr_g=inf"], "train.lr_g must be a finite number, got inf"),
    (["loss.adv_weight=nan"], "loss.adv_weight must be a finite number"),
])
def test_bad_config_is_one_line_error(overrides, words):
    with pytest.raises(ConfigError) as e:
        load_config(None, overrides)
    assert words in str(e.value) and "\n" not in str(e.value)


def test_range_edges_are_accepted():
    cfg = load_config(None, ["train.seed=2147483647", "train.beta1=0", "model.d_backbone=transformer",
                             "model.d_heads=8", "loss.gdl_alpha=0.5", "train.val_batches=1"])
    assert (cfg.train.seed, cfg.model.d_heads) == (2 ** 31 - 1, 8)
    # d_heads only matters to the transformer D
    assert load_config(None, ["model.d_heads=3"]).model.d_heads == 3


def test_one_context_frame_trains_with_the_defaults(tmp_path):
    # data.context=1 passed the config checks, then the inverse model's prior (which reads the
    # change between the last two context frames) crashed on the first step.
    import numpy as np

    from framegan.store import StoreWriter
    from framegan.train import main

    rng = np.random.default_rng(0)
    with StoreWriter(tmp_path / "s", size=(16, 16), fps=10) as w:
        for _ in range(24):
            w.add(rng.integers(0, 255, (16, 16, 3), dtype=np.uint8), source="x")
    assert main([f"data.root={tmp_path / 's'}", "data.context=1", "train.steps=2", "train.batch_size=4",
                 "model.width=4", "model.d_width=4", "model.depth=2", f"run.dir={tmp_path / 'run'}",
                 "train.sample_every=1000"]) == 0
    assert (tmp_path / "run" / "checkpoints" / "last.pt").exists()


def test_key_history_longer_than_the_context_only_matters_with_keys():
    """data.context=1 must still work without keys (the history default is 2)."""
    assert load_config(None, ["data.context=1"]).model.action_history == 2
    assert load_config(None, ["data.context=1", "model.actions=0"]).data.context == 1


def test_missing_file():
    with pytest.raises(ConfigError, match="not found"):
        load_config("no/such.yaml")


@pytest.mark.parametrize("text, where", [
    ("train:\n  steps: 3\n   model: [1, 2\n", ":3:9: invalid YAML: mapping values are not allowed in this context"),
    ("model: {width: 8\n", ":2:1: invalid YAML: did not find expected ',' or '}'"),
    ("\tmodel:\n", ":1:1: invalid YAML: found character that cannot start any token"),
])
def test_malformed_yaml_names_file_line_and_column(tmp_path, text, where):
    p = tmp_path / "bad.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert str(e.value) == f"{p}{where}"


def test_resume_conflicts_name_what_changes_the_computation():
    old = load_config(None, ["model.width=8"])
    same_run = load_config(None, ["model.width=8", "train.steps=5000", "train.log_every=1", "run.dir=elsewhere",
                                  "train.device=cpu", "data.num_workers=2", "train.resume=never"])
    assert resume_conflicts(old, same_run) == []
    other = load_config(None, ["model.width=16", "loss.adv_type=lsgan", "train.lr_g=0.001", "data.augment=true"])
    assert resume_conflicts(old, other) == [("data.augment", False, True), ("loss.adv_type", "hinge", "lsgan"),
                                            ("model.width", 8, 16), ("train.lr_g", 0.0002, 0.001)]


def test_stored_config_with_an_interpolation_is_refused(monkeypatch):
    monkeypatch.setenv("FRAMEGAN_SECRET", "s3cret")
    d = to_dict(load_config(None))
    d["data"]["root"] = "/data/${oc.env:FRAMEGAN_SECRET}"
    with pytest.raises(ConfigError, match=r"data\.root=.*interpolation") as e:
        from_dict(d)
    assert "s3cret" not in str(e.value)


@pytest.mark.parametrize("path", CONFIGS, ids=[p.stem for p in CONFIGS])
def test_every_shipped_config_loads_and_round_trips(path, tmp_path):
    cfg = load_config(path)
    assert from_dict(to_dict(cfg)) == cfg
    written = tmp_path / "config.yaml"  # what a run directory holds must load back to the same config
    written.write_text(to_yaml(cfg))
    assert load_config(written) == cfg


def test_regression_config_is_the_l1_baseline():
    cfg = load_config(Path(__file__).parents[1] / "configs" / "regression.yaml")
    assert cfg.loss.adv_weight == 0 and cfg.model.z_dim == 0


def test_train_cli_rejects_bad_config_before_work(capsys, tmp_path):
    assert train_main(["model.depth=99", f"run.dir={tmp_path / 'run'}"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "model.depth" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "run").exists()
