import dataclasses

import pytest

from captioner.config import (
    Config,
    ConfigError,
    config_from_dict,
    config_keys,
    load_config,
    parse_override,
    save_config,
)


def test_defaults_yaml_then_overrides_in_that_order(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  epochs: 3\n  lr_decoder: 0.01\nmodel:\n  backbone: resnet50\n")
    config = load_config(path, ["train.epochs=7", "data.root=/x"])
    assert config.train.epochs == 7  # the command line wins over YAML
    assert config.train.lr_decoder == 0.01  # YAML wins over the default
    assert config.model.backbone == "resnet50"
    assert config.data.root == "/x"
    assert config.train.batch_size == Config().train.batch_size  # untouched default


def test_int_is_accepted_for_float_but_not_the_reverse():
    assert config_from_dict({"train": {"lr_decoder": 1}}).train.lr_decoder == 1.0
    with pytest.raises(ConfigError, match="'train.epochs' expects int"):
        config_from_dict({"train": {"epochs": 2.5}})


@pytest.mark.parametrize(
    "values, key",
    [
        ({"train": {"epoch": 3}}, "train.epoch"),
        ({"trian": {"epochs": 3}}, "trian"),
        ({"model": {"gate": "yes"}}, "model.gate"),
        ({"train": {"epochs": True}}, "train.epochs"),
        ({"data": 5}, "data"),
    ],
)
def test_unknown_keys_and_wrong_types_name_the_key(values, key):
    with pytest.raises(ConfigError, match=f"'{key}'"):
        config_from_dict(values)


def test_override_values_are_parsed_as_yaml(tmp_path):
    # YAML 1.1 reads 1e-3 as a string; a float key takes it as the number, from a file or the command line
    path = tmp_path / "c.yaml"
    path.write_text("train:\n  lr_encoder: 1e-4\n")
    config = load_config(path, ["train.lr_decoder=1e-3", "train.out_dir=1e5"])
    assert (config.train.lr_decoder, config.train.lr_encoder, config.train.out_dir) == (0.001, 0.0001, "1e5")
    assert parse_override("model.gate=false") == {"model": {"gate": False}}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_override("train.epochs")


def test_bad_yaml_file_is_an_error_naming_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train: [1, 2\n")
    with pytest.raises(ConfigError, match="bad.yaml"):
        load_config(path)
    path.write_text("- just a list\n")
    with pytest.raises(ConfigError, match="mapping"):
        load_config(path)
    with pytest.raises(ConfigError, match="missing.yaml"):
        load_config(tmp_path / "missing.yaml")


def test_saved_config_loads_back_identically(tmp_path):
    config = load_config(None, ["train.epochs=4", "model.dropout=0.1"])
    save_config(config, tmp_path / "config.yaml")
    assert load_config(tmp_path / "config.yaml") == config


def test_shipped_configs_are_valid():
    from pathlib import Path

    configs = sorted((Path(__file__).parents[1] / "configs").glob("*.yaml"))
    assert configs
    for path in configs:
        load_config(path)


@pytest.mark.parametrize("name", ["gpu0", "cuda:99"])
def test_unknown_or_missing_device_is_a_config_error(name):
    from captioner.devices import resolve_device

    with pytest.raises(ConfigError, match=f"device '{name}'"):
        resolve_device(name)


def test_every_config_key_is_listed_with_its_default_and_comment():
    listed = {key: (default, comment) for key, default, comment in config_keys()}
    config = Config()
    sections = {section.name: getattr(config, section.name) for section in dataclasses.fields(Config)}
    expected = {f"{name}.{key.name}" for name, section in sections.items() for key in dataclasses.fields(section)}
    assert set(listed) == expected
    for key, (default, comment) in listed.items():
        section, name = key.split(".")
        assert default == getattr(sections[section], name), key
        assert comment and not comment.startswith("#"), key
    assert listed["train.alpha_c"] == (1.0, "doubly stochastic attention weight, paper §4.2.1")
