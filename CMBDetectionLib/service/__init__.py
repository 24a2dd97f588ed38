"""``cmb-serve``, the detection service: ``app`` (HTTP API), ``jobs`` (SQLite job queue), ``pool`` and ``worker``
(processes running the engine), ``uploads`` (streamed, size-limited, zip unpacking), ``auth`` (bearer tokens),
``audit`` (who did what), ``retention`` (``--keep-days``), ``layout`` (the data folder). Needs the ``[server]``
extra (FastAPI, uvicorn, python-multipart)."""
