"""How a lesion is named, coded and coloured in every output: files, and the Slicer module's nodes.

Slicer's General Anatomy list has no microbleed code, so a lesion is *Morphologically Altered Structure /
Hemorrhage* in the *Brain* (SNOMED CT), which keeps DICOM SEG export possible; the DICOM SEG and SR code it the
same way (:func:`dicom_code`).

>>> lesion_name(3)
'CMB 3'
>>> TERMINOLOGY_ENTRY.split("~")[2]
'SCT^50960005^Hemorrhage'
"""

from __future__ import annotations

from typing import Any

_CONTEXT = "Segmentation category and type - 3D Slicer General Anatomy list"
_ANATOMIC_CONTEXT = "Anatomic codes - DICOM master list"
#: A lesion's category, type and anatomic region as code triples (scheme, value, meaning).
CATEGORY = ("SCT", "49755003", "Morphologically Altered Structure")
TYPE = ("SCT", "50960005", "Hemorrhage")
REGION = ("SCT", "12738006", "Brain")

#: The terminology as ``slicerio`` writes it into a ``.seg.nrrd`` (code triples: scheme, value, meaning).
TERMINOLOGY = {
    "contextName": _CONTEXT,
    "category": list(CATEGORY),
    "type": list(TYPE),
    "anatomicContextName": _ANATOMIC_CONTEXT,
    "anatomicRegion": list(REGION),
}
#: The same as one Slicer entry string: context~category~type~type modifier~anatomic context~region~region modifier.
TERMINOLOGY_ENTRY = "~".join(
    (_CONTEXT, "^".join(CATEGORY), "^".join(TYPE), "^^", _ANATOMIC_CONTEXT, "^".join(REGION), "^^")
)
#: Slicer's "bleeding" colour, RGB 0..1.
BLEEDING_COLOUR = (188 / 255, 65 / 255, 28 / 255)
#: printf-style label of markups points, matching :func:`lesion_name`.
POINT_LABEL_FORMAT = "CMB %d"


def lesion_name(label: int) -> str:
    """Name of lesion ``label``'s segment, markups point and table row."""
    return POINT_LABEL_FORMAT % label


def dicom_code(code: tuple[str, str, str]) -> Any:
    """A code triple as ``pydicom``'s ``Code`` (imported here: the Slicer module reads this file without pydicom)."""
    from pydicom.sr.coding import Code

    scheme, value, meaning = code
    return Code(value, scheme, meaning)
