"""Where stage one loses each CMB: every CMB is found or lost at exactly one stage."""

from __future__ import annotations

import pytest
import SimpleITK as sitk

from CMBDetectionLib.phantoms.generator import generate_subject
from CMBDetectionLib.probability.two_stage.method import StageSettings
from CMBDetectionLib.probability.two_stage.stage_survivors import STAGES, stage_survivors
from CMBDetectionLib.probability.unet.slicing import to_axial


@pytest.fixture(scope="module")
def phantom():
    subject = generate_subject(301, size=256, spacing=0.9, slice_thickness=2.0, n_slices=48)  # 4 CMBs
    image = to_axial(sitk.Cast(subject.image, sitk.sitkFloat32))
    truth = sitk.GetArrayFromImage(to_axial(subject.cmb_mask)) > 0
    return sitk.GetArrayFromImage(image), truth, tuple(image.GetSpacing()[::-1])


def test_each_cmb_is_found_or_lost_once(phantom):
    survivors = stage_survivors(*phantom)
    assert survivors.n_cmbs >= 2 and survivors.sensitivity >= 0.5
    assert set(survivors.lost()) == set(STAGES)
    assert int(survivors.found.sum()) + sum(survivors.lost().values()) == survivors.n_cmbs
    assert 0 < survivors.n_candidates <= StageSettings().max_candidates


def test_a_cap_of_zero_loses_every_accepted_cmb_at_the_ranking(phantom):
    full, none = stage_survivors(*phantom), stage_survivors(*phantom, StageSettings(max_candidates=0))
    assert none.n_candidates == 0 and not none.found.any()
    assert none.lost()["rank"] == int(full.accepted.sum()) >= int(full.found.sum()) > 0
