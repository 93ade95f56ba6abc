"""``audiodup serve``: the screening service (FastAPI on uvicorn worker processes).

Modules: ``config`` (:class:`~audiodup.service.config.ServiceConfig`: TOML < environment <
flags), ``auth`` (hashed API keys with scopes, ``require_scope``, rate limits shared by the
workers), ``engine`` (the catalog of one worker process, its lock and engine thread,
``Engine.read``, ``get_catalog``), ``errors`` (``ApiError``, ``engine_error``), ``intake``
(receiving upload bytes under size and type limits), ``jobs`` (asynchronous jobs), ``metrics``
(Prometheus), ``logs`` (JSON lines), ``app`` (``create_app``: the routes) and ``local`` (a
local ``audiodup serve`` subprocess for tests and benchmarks).

For routers mounted in the application (the review queue, ``audiodup.service.review``, whose
``router`` is mounted at ``/review`` and ``api_router`` -- or ``router`` when it has none -- at
``/v1/reviews``)::

    from typing import Annotated
    from fastapi import APIRouter, Depends
    from audiodup import Catalog
    from audiodup.service.auth import require_scope
    from audiodup.service.engine import get_catalog

    router = APIRouter()

    @router.get("/")
    def queue(
        key_name: Annotated[str, Depends(require_scope("review"))],
        catalog: Annotated[Catalog, Depends(get_catalog)],
    ):
        ...  # a ``def`` endpoint: it runs in a thread, holding this process's catalog lock

(``tests/test_service_app.py`` mounts such a stand-in.)

Importing this package needs the ``serve`` extra (``pip install 'audiodup[serve]'``).
"""
