"""The recipe as one frozen value, and the pieces the trainer is made of (terms, checkpoints,
averaging), each on its own. No network is trained here."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from train.recipe import SHIPPED, Phase, Recipe, Stage, Terms, parse_stages, setting_help


def test_the_recipe_is_frozen_and_survives_json():
    with pytest.raises(dataclasses.FrozenInstanceError):
        SHIPPED.seed = 1
    again = Recipe.from_dict(json.loads(json.dumps(SHIPPED.to_dict())))
    assert again == SHIPPED and again.phases[1].terms.mix == SHIPPED.phases[1].terms.mix
    assert SHIPPED.input_size == 128 and SHIPPED.members == ("mobilenet_v3_small", "shufflenet_v2_x1_0")


def test_a_setting_changes_from_text_and_nothing_else_changes():
    changed = SHIPPED.with_settings(["members.stages=64:0.5:1,128:1:2", "resolution.terms.copies_only=true",
                                     "distillation.epochs=0", "seed=4"])
    assert changed.phase("members").stages == (Stage(64, 0.5, 1), Stage(128, 1.0, 2))
    assert changed.phase("resolution").terms.copies_only is True
    assert (changed.distillation.epochs, changed.seed) == (0, 4)
    assert changed.phase("resolution").optimiser == SHIPPED.phase("resolution").optimiser
    assert SHIPPED.phase("members").stages == (Stage(128, 1.0, 5),)  # the original is untouched


@pytest.mark.parametrize("setting, message", [
    ("members.terms.bogus=1", "no setting 'bogus'"),
    ("members.terms=1", "group of settings"),
    ("members.optimiser.lr_head=fast", "not a valid float"),
    ("members.stages=128", "size:fraction:epochs"),
    ("members.select=best", "choose srcc or srcc"),
    ("resolution.terms.monotone=-1", ">= 0"),
    ("members.soup=0", "at least 1"),
    ("spec.margin=0.2", "framing and scale"),
    ("nothere=1", "no setting 'nothere'"),
])
def test_a_wrong_setting_is_refused_with_its_name(setting, message):
    with pytest.raises(ValueError, match=message):
        SHIPPED.with_settings([setting])


def test_the_commands_help_lists_every_setting_with_its_value():
    text = setting_help(Recipe, SHIPPED)
    for name in ("labels.variants = 2", "distillation.epochs = 6", "seed = 0", "PHASE.terms.monotone",
                 "PHASE.optimiser.lr_backbone", "PHASE.ema", "members.<setting>", "resolution.<setting>"):
        assert name in text
    phase_text = setting_help(Phase, SHIPPED.phase("resolution"))
    assert "terms.monotone = 0.5" in phase_text and "stages = 128:1:3" in phase_text
    leaves = [f for f in dataclasses.fields(Terms)]
    assert all(f"terms.{f.name} =" in phase_text for f in leaves)


def test_stages_read_and_write_as_the_commands_spell_them():
    assert parse_stages("64:0.4:5,96:0.7:5,128:1:7")[1] == Stage(96, 0.7, 5)
    assert str(Stage(128, 1.0, 3)) == "128:1:3"
    with pytest.raises(ValueError, match="size:fraction:epochs"):
        parse_stages("64:0.4")


def test_terms_are_added_in_a_fixed_order_and_only_when_weighted():
    from train.terms import ConsistencyTerm, LabelTerm, RankTerm, build_terms

    terms = build_terms(Terms(rank=1.0, consistency=0.5), teacher=None, monotone=None)
    assert [type(t) for t in terms] == [LabelTerm, ConsistencyTerm, RankTerm]
    assert [type(t) for t in build_terms(Terms(), teacher=None, monotone=None)] == [LabelTerm]

    class NeedsFeatures:
        needs = ("features",)

    with pytest.raises(ValueError, match="not combined"):
        build_terms(Terms(consistency=1.0), teacher=NeedsFeatures(), monotone=None)


def test_the_label_term_is_msecorrloss_and_the_rank_term_needs_pairs():
    from train.losses import MSECorrLoss
    from train.terms import Forward, LabelTerm, RankTerm, StepData

    pred, target = torch.tensor([0.2, 0.5, 0.9]), torch.tensor([0.1, 0.6, 0.8])
    step = StepData(torch.zeros(3, 3, 4, 4), target, np.arange(3), np.arange(3), np.zeros((3, 4, 4, 3), np.uint8),
                    None, ["a", "a", "b"], np.array([True, False, True]))
    assert torch.equal(LabelTerm(1.0)(step, Forward(pred)), MSECorrLoss(1.0)(pred, target))
    both = LabelTerm(1.0)(step, Forward(pred, moved=target))
    assert torch.isclose(both, (MSECorrLoss(1.0)(pred, target) + MSECorrLoss(1.0)(target, target)) / 2)
    # photo "a" (0.2) below its copy (0.5): the hinge is 0.02 + 0.3
    assert torch.isclose(RankTerm(2.0, 0.02)(step, Forward(pred)), torch.tensor(2 * 0.32))
    alone = dataclasses.replace(step, groups=["a", "b", "c"])
    assert RankTerm(2.0, 0.02)(alone, Forward(pred)) is None


def test_resume_states_are_written_whole_and_refused_for_other_settings(tmp_path):
    from train.checkpoints import comparable, load_resume, save_resume

    path = tmp_path / "m.resume.pt"
    save_resume(path, {"fingerprint": {"seed": 0}, "stage": 1, "epoch": 2})
    assert not path.with_suffix(".partial").exists()
    told = []
    assert load_resume(path, {"seed": 0}, lambda r: r == {"seed": 0}, told.append)["epoch"] == 2
    assert "resuming after stage 1 epoch 2" in told[0]
    with pytest.raises(ValueError, match="other settings"):
        load_resume(path, {"seed": 1}, lambda r: r == {"seed": 1}, told.append)
    assert load_resume(tmp_path / "none.pt", {}, lambda r: True, told.append) is None
    # a setting added to a group since the record was made counts as its default
    defaults = {"phase": {"jitter": 0.0, "ema": 0.0}, "csv": None}
    assert comparable({"phase": {"ema": 0.0}}, defaults) == comparable({"phase": {"jitter": 0.0, "ema": 0.0}, "csv": None})
    (tmp_path / "link").symlink_to(tmp_path)
    assert comparable({"csv": str(tmp_path / "link" / "a.csv")}) == comparable({"csv": str(tmp_path / "a.csv")})
