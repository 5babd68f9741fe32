"""Imported by the fork server of a local Dask cluster (``preload`` of
:func:`tio2fiji.cluster.start_client`), or by a ``dask worker --preload tio2fiji._warm_worker``:
imports tio2fiji's analysis and runs :func:`tio2fiji.analyze.warm_up` once, so that the workers
start with what their first image would otherwise load."""

from .analyze import warm_up

SECONDS = warm_up()
