"""How a lesion is named, coded and coloured in every output: files, and the Slicer module's nodes.

Slicer's General Anatomy list has no microbleed code, so a lesion is *Morphologically Altered Structure /
Hemorrhage* in the *Brain* (SNOMED CT), which keeps DICOM SEG export possible.

>>> lesion_name(3)
'CMB 3'
>>> TERMINOLOGY_ENTRY.split("~")[2]
'SCT^50960005^Hemorrhage'
"""

from __future__ import annotations

_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_CATEGORY = ("SCT", "49755003", "Morphologically Altered Structure")
_TYPE = ("SCT", "50960005", "Hemorrhage")
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
_REGION = ("SCT", "12738006", "Brain")

#: The terminology as ``slicerio`` writes it into a ``.seg.nrrd`` (code triples: scheme, value, meaning).
TERMINOLOGY = {
    "contextName": _CONTEXT,
    "category": list(_CATEGORY),
    "type": list(_TYPE),
    "anatomicContextName": _ANATOMIC_CONTEXT,
    "anatomicRegion": list(_REGION),
}
#: The same as one Slicer entry string: context~category~type~type modifier~anatomic context~region~region modifier.
TERMINOLOGY_ENTRY = "~".join(
    (_CONTEXT, "^".join(_CATEGORY), "^".join(_TYPE), "^^", _ANATOMIC_CONTEXT, "^".join(_REGION), "^^")
)
#: Slicer's "bleeding" colour, RGB 0..1.
BLEEDING_COLOUR = (188 / 255, 65 / 255, 28 / 255)
#: printf-style label of markups points, matching :func:`lesion_name`.
POINT_LABEL_FORMAT = "CMB %d"


def lesion_name(label: int) -> str:
    """Name of lesion ``label``'s segment, markups point and table row."""
    return POINT_LABEL_FORMAT % label
