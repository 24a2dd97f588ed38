"""Where the two-stage method's first stages lose each ground-truth CMB (a diagnostic, off the detection path).

Stage one (skull removal, k-means clustering, shape/size filter, ranking) must keep nearly every CMB, since the
classifier can only accept candidates. For each CMB of a labelled volume this follows it through the stages, in
order:

1. ``mask``: its centre voxel lies outside the brain mask;
2. ``rim``: inside the mask, but none of its voxels lies deeper than ``EDGE_MARGIN_MM`` (seeds are only taken
   there, so the mask's rim is lost with it);
3. ``cluster``: none of its voxels is in the darkest k-means cluster of the local contrast;
4. ``shape``: it reached the cluster but no accepted region is matched to it (one to one, within
   ``MATCH_DISTANCE_MM``): no seed's region passed the size/shape test, or it was part of a neighbour's;
5. ``rank``: a region was matched to it, but ranked below the ``max_candidates`` kept.

A CMB matched to a kept candidate is ``found`` whatever the stages say (a neighbouring candidate can cover it).

>>> survivors = stage_survivors(array, truth, (2.0, 0.9, 0.9))        # doctest: +SKIP
>>> survivors.sensitivity, survivors.lost()                            # doctest: +SKIP
(0.93, {'mask': 0, 'rim': 1, 'cluster': 0, 'shape': 0, 'rank': 1})
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage

from CMBDetectionLib.evaluation.metrics import match_lesions
from CMBDetectionLib.lesions.extraction import component_centres_mm, label_components
from CMBDetectionLib.probability.two_stage.brain_mask import brain_mask_array
from CMBDetectionLib.probability.two_stage.depth_regions import ShapeLimits
from CMBDetectionLib.probability.two_stage.kmeans_candidates import EDGE_MARGIN_MM, Candidate, search_candidates
from CMBDetectionLib.probability.two_stage.method import StageSettings

STAGES = ("mask", "rim", "cluster", "shape", "rank")


@dataclass(frozen=True)
class StageSurvivors:
    """Per ground-truth CMB (in label order): whether it passed each stage; and the number of candidates kept."""

    in_mask: np.ndarray
    deep_enough: np.ndarray
    in_cluster: np.ndarray
    accepted: np.ndarray
    found: np.ndarray
    n_candidates: int

    @property
    def n_cmbs(self) -> int:
        return len(self.found)

    @property
    def sensitivity(self) -> float:
        """Found CMBs / all CMBs (NaN without CMBs)."""
        return float(self.found.mean()) if self.n_cmbs else float("nan")

    def lost(self) -> dict[str, int]:
        """Missed CMBs by the first stage they failed (:data:`STAGES`)."""
        passed = np.ones(self.n_cmbs, bool)
        counts = {}
        checks = (self.in_mask, self.deep_enough, self.in_cluster, self.accepted, np.zeros(self.n_cmbs, bool))
        for stage, ok in zip(STAGES, checks, strict=True):
            counts[stage] = int(np.sum(passed & ~ok & ~self.found))
            passed &= ok
        return counts


def _matched(centres_mm: np.ndarray, candidates: list[Candidate], spacing: np.ndarray) -> np.ndarray:
    """Per CMB centre: whether one of ``candidates`` is matched to it."""
    cand_mm = np.array([c.centre_kji for c in candidates], dtype=float).reshape(-1, 3) * spacing
    found = np.zeros(len(centres_mm), bool)
    found[[g for g, _ in match_lesions(centres_mm, cand_mm)]] = True
    return found


def stage_survivors(
    array: np.ndarray, truth: np.ndarray, spacing_kji: tuple[float, float, float], settings: StageSettings | None = None
) -> StageSurvivors:
    """Run stage one on an axial ``[k, j, i]`` ``array`` and follow each CMB of the mask ``truth`` through it
    (``settings``: the candidate settings, default :class:`.method.StageSettings`)."""
    settings = settings or StageSettings()
    spacing = np.asarray(spacing_kji, dtype=float)
    brain = brain_mask_array(array, tuple(spacing))
    search = search_candidates(array, brain, tuple(spacing), n_clusters=settings.n_clusters,
                               limits=ShapeLimits(**settings.shape_limits()))
    kept = search.ranked[: settings.max_candidates]
    labels, count = label_components(truth)
    index = np.arange(1, count + 1)
    centres = component_centres_mm(labels, count, spacing)
    centre_voxels = np.clip(np.rint(centres / spacing).astype(int), 0, np.asarray(array.shape) - 1).reshape(-1, 3)
    depth = ndimage.distance_transform_edt(brain, sampling=spacing)
    return StageSurvivors(
        in_mask=brain[tuple(centre_voxels.T)].astype(bool),
        deep_enough=np.asarray(ndimage.maximum(depth, labels, index), float).reshape(-1) > EDGE_MARGIN_MM,
        in_cluster=np.asarray(ndimage.maximum(search.dark, labels, index), bool).reshape(-1),
        accepted=_matched(centres, search.ranked, spacing),
        found=_matched(centres, kept, spacing),
        n_candidates=len(kept),
    )
