import glob

import pytest

from mmgenre.config import ConfigError, load_config


def test_unknown_key_is_rejected_with_suggestion():
    with pytest.raises(ConfigError, match=r"unknown config key 'train.epohcs' \(did you mean 'epochs'\?\)"):
        load_config(raw={"train": {"epohcs": 3}})


def test_unknown_section_is_rejected():
    with pytest.raises(ConfigError, match="unknown config key 'trian'"):
        load_config(raw={"trian": {}})


def test_wrong_type_names_the_key():
    with pytest.raises(ConfigError, match="train.epochs must be an integer, got 'ten'"):
        load_config(raw={"train": {"epochs": "ten"}})


def test_bad_choice_lists_the_choices():
    with pytest.raises(ConfigError, match=r"data.task must be one of \['multilabel', 'single'\]"):
        load_config(raw={"data": {"task": "multiclass"}})
    with pytest.raises(ConfigError,
                       match=r"evaluation.thresholds must be one of \['prevalence', 'per_genre'\]"):
        load_config(raw={"evaluation": {"thresholds": "global"}})


def test_set_overrides_parse_yaml_values_and_quick_block(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("model: {name: lstm}\ntrain: {epochs: 20}\nquick: {train.epochs: 1, data.limit: 8}\n")
    cfg = load_config(str(path), overrides=["data.image_size=[64, 48]", "train.learning_rate=0.01"])
    assert cfg.name == "exp" and cfg.train.epochs == 20 and cfg.data.image_size == (64, 48)
    assert cfg.train.learning_rate == 0.01 and cfg.model.name == "lstm"
    quick = load_config(str(path), quick=True)
    assert quick.train.epochs == 1 and quick.data.limit == 8


def test_quick_without_block_is_an_error(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train: {epochs: 2}\n")
    with pytest.raises(ConfigError, match="has no 'quick' block"):
        load_config(str(path), quick=True)


def test_init_frozen_needs_a_source_and_losses_are_listed():
    with pytest.raises(ConfigError, match="train.init_frozen needs train.init_from"):
        load_config(raw={"train": {"init_frozen": True}})
    with pytest.raises(ConfigError,
                       match=r"train.loss must be one of \['crossentropy', 'balanced', 'focal'\]"):
        load_config(raw={"train": {"loss": "weighted"}})
    with pytest.raises(ConfigError, match="data.train_limit must be >= 1 or null, got 0"):
        load_config(raw={"data": {"train_limit": 0}})


@pytest.mark.parametrize("path", sorted(glob.glob("configs/*.yaml") + glob.glob("configs/pretrain/*.yaml")))
def test_shipped_configs_load_in_both_variants(path):
    from mmgenre.models import registry

    cfg = load_config(path)
    registry.check_params(cfg.model.name, cfg.model.params)
    assert load_config(path, quick=True).train.epochs == 1


@pytest.mark.parametrize("path", sorted(glob.glob("configs/search/*.yaml")))
def test_shipped_search_configs_load_in_both_variants(path):
    from mmgenre.tuning import search as search_lib
    from mmgenre.tuning.hypermodels import check_space

    for quick in (False, True):
        search = search_lib.load_search_config(path, quick=quick)
        check_space(search.space, search_lib.experiment_config(search))


@pytest.mark.parametrize("override, message", [
    ("train.epochs=[", "not a valid YAML value"),
    ("train.epochs=!!python/object/apply:os.system [echo]", "not a valid YAML value"),
    ("data.image_size=[a,b]", "data.image_size must be"),
    ("workdir=runs/{nme}", "may only use the placeholder"),
    ("data=0", "it is a section"),
    ("train.learning_rate=.inf", "finite number"),
    ("train.fine_tune_blocks=0", "train.fine_tune_blocks must be >= 1"),
])
def test_malformed_overrides_are_one_line_errors(override, message):
    with pytest.raises(ConfigError, match=message):
        load_config(raw={}, overrides=[override])


@pytest.mark.parametrize("text", ["- a\n- b\n", "just a string\n"])
def test_a_config_that_is_not_a_mapping_is_refused(tmp_path, text):
    (tmp_path / "c.yaml").write_text(text)
    with pytest.raises(ConfigError, match="must be a mapping"):
        load_config(str(tmp_path / "c.yaml"))


def test_augmenting_posters_whose_features_are_cached_is_refused():
    with pytest.raises(ConfigError, match="data.augment has no effect with train.cache_features"):
        load_config(raw={"data": {"augment": True}, "train": {"cache_features": True}})
    # With a fine-tuning phase the augmentation applies there.
    load_config(raw={"data": {"augment": True},
                     "train": {"cache_features": True, "fine_tune_epochs": 1}})
