from pathlib import Path

import pytest

from configs.errors import UserError
from configs.loader import apply_overrides, flatten, load_config
from configs.schema import PipelineConfig

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", ["demo.yaml", "msvd_qa.yaml"])
def test_shipped_configs_validate(name):
    cfg = load_config(REPO / "configs" / name, base_dir=REPO)
    assert isinstance(cfg, PipelineConfig)
    assert cfg.store.path.is_absolute() and cfg.dataset.root.is_absolute()
    assert cfg.tracking.uri.startswith("sqlite:////")


def test_paper_config_values():
    cfg = load_config(REPO / "configs" / "msvd_qa.yaml", base_dir=REPO)
    assert (cfg.clips.num_clips, cfg.clips.frames_per_clip) == (8, 16)
    assert (cfg.clips.appearance_size, cfg.clips.motion_size) == (224, 112)
    assert (cfg.features.appearance.backbone, cfg.features.motion.backbone) == ("resnet101", "resnext101_3d")
    assert (cfg.model.module_dim, cfg.text.word_dim) == (768, 300)


def test_overrides_set_nested_values_with_yaml_types(tmp_path):
    cfg = load_config(REPO / "configs" / "demo.yaml", ["train.qa.epochs=3", "clips.sampling=hcrn",
                                                       "dataset.synthetic=null", "store.path=x.zarr"], base_dir=tmp_path)
    assert cfg.train.qa.epochs == 3
    assert cfg.clips.sampling == "hcrn"
    assert cfg.dataset.synthetic is None
    assert cfg.store.path == tmp_path / "x.zarr"


@pytest.mark.parametrize("override, field", [
    ("train.qa.epochs=-1", "train.qa.epochs"),
    ("clips.sampling=random", "clips.sampling"),
    ("model.nonsense=1", "model.nonsense"),
    ("runner.kind=slurm", "runner.kind"),
])
def test_bad_values_name_the_field(override, field):
    with pytest.raises(UserError, match=field.replace(".", r"\.")):
        load_config(REPO / "configs" / "demo.yaml", [override])


def test_missing_and_malformed_files(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        load_config(tmp_path / "nope.yaml")
    bad = tmp_path / "bad.yaml"
    bad.write_text("a: [1, 2\n")
    with pytest.raises(UserError, match="not valid YAML"):
        load_config(bad)
    with pytest.raises(UserError, match="key.path=value"):
        apply_overrides({}, ["novalue"])


def test_flatten():
    assert flatten({"a": {"b": 1, "c": {"d": "x"}}, "e": None}) == {"a.b": 1, "a.c.d": "x", "e": None}


def test_every_config_field_has_a_title_and_a_one_line_description():
    from pydantic import BaseModel

    from configs import schema

    models = [obj for obj in vars(schema).values()
              if isinstance(obj, type) and issubclass(obj, BaseModel) and obj.__module__ == schema.__name__
              and obj.model_fields]
    assert len(models) >= 14
    for model in models:
        for name, field in model.model_fields.items():
            assert field.title and field.description, f"{model.__name__}.{name}"
            assert "\n" not in field.description and len(field.description) <= 110, f"{model.__name__}.{name}"


def test_backbone_and_normalisation_dropdowns_list_exactly_the_registered_names():
    from typing import get_args

    from configs.schema import BackboneName, NormalizationName, PipelineConfig
    from models.backbones.normalize import SCHEME_NAMES
    from models.backbones.registry import BACKBONE_NAMES as _BUILDERS

    assert set(get_args(BackboneName)) == set(_BUILDERS)
    assert set(get_args(NormalizationName)) == set(SCHEME_NAMES)
    # In the JSON schema Prefect renders, they are enumerations: dropdowns in the form.
    backbone = PipelineConfig.model_json_schema()["$defs"]["BackboneConfig"]["properties"]
    assert set(backbone["backbone"]["enum"]) == set(_BUILDERS)
    assert set(backbone["normalization"]["enum"]) == set(SCHEME_NAMES)
