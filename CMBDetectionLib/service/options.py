"""The optional form fields of a job, checked and turned into keyword arguments of ``pipeline.detect()``.

The booleans take ``true``/``false`` (or ``1``/``0``); an absent field keeps ``detect()``'s default.

>>> job_options({"threshold": "0.2", "mars": "false"})
('unet', {'threshold': 0.2, 'mars': False})
>>> job_options({"method": "two-stage", "lesion_filter": "0", "redraw_outlines": "true"})
('two-stage', {'use_lesion_filter': False, 'redraw_outlines': True})
"""

from __future__ import annotations

from typing import Any

METHODS = ("unet", "two-stage")
#: form field -> ``detect()`` keyword, for the true/false fields
BOOLEAN_FIELDS = {"mars": "mars", "lesion_filter": "use_lesion_filter", "redraw_outlines": "redraw_outlines"}
FIELDS = ("method", "threshold", *BOOLEAN_FIELDS)
_TRUTH = {"true": True, "1": True, "false": False, "0": False}


class OptionError(ValueError):
    """A form field with a value the service cannot use; the message names it and what is allowed."""


def job_options(fields: dict[str, str]) -> tuple[str, dict[str, Any]]:
    """``(method, detect() keyword arguments)`` from the text fields of a submission."""
    method = fields.get("method") or "unet"
    if method not in METHODS:
        raise OptionError(f"method {method!r} unknown; choose one of {', '.join(METHODS)}.")
    options: dict[str, Any] = {}
    if fields.get("threshold"):
        try:
            options["threshold"] = float(fields["threshold"])
        except ValueError:
            options["threshold"] = -1.0
        if not 0.0 < options["threshold"] < 1.0:
            raise OptionError(f"threshold {fields['threshold']!r} must be a number strictly between 0 and 1.")
    for name, keyword in BOOLEAN_FIELDS.items():
        if fields.get(name):
            if fields[name].lower() not in _TRUTH:
                raise OptionError(f"{name} {fields[name]!r} must be true or false.")
            options[keyword] = _TRUTH[fields[name].lower()]
    return method, options
