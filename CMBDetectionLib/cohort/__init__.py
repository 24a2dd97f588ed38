"""``cmb-cohort``: detection over a cohort on Dask distributed, resumable, one output folder per subject."""
