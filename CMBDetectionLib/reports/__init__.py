"""Reports people look at: a self-contained HTML page per subject and one per cohort, images embedded as PNG."""
