"""Imported by the fork server of a local Dask cluster (``preload`` of
:func:`tio2fiji.run.start_client`), or by a ``dask worker --preload tio2fiji._warm_worker``:
imports tio2fiji's analysis and runs :func:`tio2fiji.run.warm_up` once, so that the workers
start with what their first image would otherwise load."""

import logging

from .run import warm_up

try:
    SECONDS = warm_up()
except Exception as exc:  # noqa: BLE001 - only a head start: a fork server that raised here would start no worker
    logging.getLogger(__name__).warning("tio2fiji warm-up skipped: %s", exc)
    SECONDS = None
