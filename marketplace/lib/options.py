"""`OPTIONS` answers every method a path serves in its `Allow` header.

Litestar (2.x; litestar-org/litestar#4169, fixed in 3.0) answers `OPTIONS` with a handler it generates
for each route, whose `Allow` lists the methods of the `HTTPRoute` object that generated it. When a
later handler joins a path already registered (a controller's `GET /` and `POST /` are registered one
after the other), `Router.register` builds a new `HTTPRoute` with every method and carries the earlier
`OPTIONS` handler over into it (the path already answers `OPTIONS`, so no new one is made): that
handler still reads the first route's methods, and `OPTIONS /sellers/me/listings` says `GET, OPTIONS`
although `POST` is served too.

`repair_options_allow(app)`, called once after the app is built, points each generated handler back at
the route that now serves it. Nothing else changes: the handler, its 204 and its place in the routing
table are Litestar's own.
"""

from __future__ import annotations

from litestar import Litestar
from litestar.routes import HTTPRoute


def repair_options_allow(app: Litestar) -> int:
    """Make each route's generated `OPTIONS` handler list that route's methods; how many were stale."""
    repaired = 0
    for route in app.routes:
        if not isinstance(route, HTTPRoute):
            continue
        for handler in route.route_handlers:
            fn = handler.fn
            # Only the handler Litestar generates (`HTTPRoute.create_options_handler`): its function is
            # a closure over the route (`self`) whose `methods` it lists. A declared OPTIONS handler, or a
            # Litestar whose generated handler has another shape, is left alone (tests/integration/
            # test_options.py then fails, which is the point).
            if getattr(fn, "__qualname__", "") != "HTTPRoute.create_options_handler.<locals>.options_handler":
                continue
            cells = dict(zip(fn.__code__.co_freevars, fn.__closure__ or (), strict=True))
            owner = cells.get("self")
            if owner is not None and owner.cell_contents is not route:
                owner.cell_contents = route
                repaired += 1
    return repaired
