"""Facial regions of interest on face-mesh landmarks, by name (``ROI_SETS``).

A leaf module: the feature configuration validates its ``roi_set`` against this registry and the
featurizer builds its regions from it.
"""

from __future__ import annotations

from dataclasses import dataclass

from stream.registry import Registry


@dataclass(frozen=True)
class RoiSet:
    """Named ROIs on face-mesh landmark indices plus the rigid reference region."""

    regions: dict[str, tuple[int, ...]]
    reference: tuple[int, ...]

    @property
    def names(self) -> list[str]:
        return list(self.regions)


ROI_SETS: Registry[RoiSet] = Registry("ROI set")

# Sides are the subject's own (subject's right appears on the image's left).
_MESH17 = RoiSet(
    regions={
        "brow_inner_r": (107, 66, 55, 65),  # AU1, AU4
        "brow_outer_r": (70, 63, 46, 53),  # AU2
        "brow_inner_l": (336, 296, 285, 295),
        "brow_outer_l": (300, 293, 276, 283),
        "glabella": (9, 8, 193, 417),  # AU4 furrow
        "eye_r": (159, 158, 160, 145, 144, 153),  # AU7, AU45 (lids)
        "eye_l": (386, 385, 387, 374, 373, 380),
        "nose_wings": (129, 358, 98, 327, 209, 429),  # AU9
        "cheek_r": (50, 101, 118, 117, 123),  # AU6
        "cheek_l": (280, 330, 347, 346, 352),
        "nasolabial_r": (206, 203, 36),  # AU10, AU11
        "nasolabial_l": (426, 423, 266),
        "mouth_corner_r": (61, 76, 146, 185),  # AU12, AU14, AU15, AU20
        "mouth_corner_l": (291, 306, 375, 409),
        "lip_upper": (0, 37, 267, 13, 82, 312),  # AU10, AU23, AU25
        "lip_lower": (17, 84, 314, 14, 87, 317),  # AU16, AU25, AU26
        "chin": (152, 175, 199, 200, 148, 377),  # AU17, AU26
    },
    # nose bridge, inner eye corners, face sides at eye and ear level: rigid with the skull
    reference=(168, 6, 197, 195, 133, 362, 127, 356, 234, 454),
)
ROI_SETS.register("mesh17")(lambda: _MESH17)
