"""The emulator's method registry: one handler per Bitrix24 method, called with a ``Call``.

Handlers are plain functions that read ``call.params``, change ``call.portal`` under its lock,
charge their modelled database cost with ``call.charge`` and return a value or a ``Result``.
The WSGI app (and ``batch``, and the seed generator through ``invoke``) all dispatch here.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from connector.catalog import canonical, is_write
from connector.errors import HTTP_STATUS

if TYPE_CHECKING:
    from connector.emulator.state import Portal


class ApiError(Exception):
    """An error the emulated portal answers with; the HTTP status comes from the shared table."""

    def __init__(self, code: str | int, description: str, status: int | None = None):
        self.code = code
        self.description = description
        if status is None:
            status = HTTP_STATUS.get(code, 400) if isinstance(code, str) else 400
        self.status = status
        super().__init__(f"{code}: {description}")


@dataclass
class Result:
    """A handler's answer when it carries list metadata."""

    result: Any
    total: int | None = None
    next: int | None = None


@dataclass
class Call:
    """One method call as the handler sees it."""

    portal: "Portal"
    method: str
    params: dict[str, Any]
    user_id: int = 1
    auth: str = "webhook"  # "webhook" or "oauth"
    app: str | None = None  # OAuth client_id or webhook code: the owner of the operating budget
    cost: float = 0.0  # modelled seconds of database work (reported as time.operating)

    def charge(self, seconds: float) -> None:
        """Add modelled database time to this call."""
        self.cost += seconds

    def param(self, name: str, default: Any = None) -> Any:
        """A top-level parameter by name, case-insensitively (legacy methods take FILTER or filter)."""
        if name in self.params:
            return self.params[name]
        lowered = name.lower()
        for key, value in self.params.items():
            if key.lower() == lowered:
                return value
        return default


Handler = Callable[[Call], Any]


def by_name(decoded: Any) -> dict[str, Any]:
    """Decoded parameters as a call takes them, by name: keys that were all list indices (``=x``,
    ``0=x``, ``[]=x`` decode to a list) stay the names "0", "1"..., as PHP keeps them."""
    if isinstance(decoded, list):
        return {str(index): value for index, value in enumerate(decoded)}
    return decoded


@dataclass(frozen=True)
class MethodSpec:
    """A registered method and the rules the app applies before calling it.

    Whether it writes is not declared here: ``connector.catalog.is_write`` decides that for the
    client and the emulator alike (``writes`` asks it for a call without parameters).
    """

    name: str
    handler: Handler
    oauth_only: bool = False  # event.* methods refuse incoming webhooks (WRONG_AUTH_TYPE)
    batchable: bool = True  # batch inside batch is refused
    scope: str = "crm"

    @property
    def writes(self) -> bool:
        """True when a call of this method may change the portal (``catalog.is_write`` without parameters)."""
        return is_write(self.name)


METHODS: dict[str, MethodSpec] = {}


def method(
    name: str,
    *,
    oauth_only: bool = False,
    batchable: bool = True,
    scope: str = "crm",
) -> Callable[[Handler], Handler]:
    """Register a handler under a method name (lower case; the portal is case-insensitive).

    Whether it writes is not declared here: ``connector.catalog.is_write`` classifies every method.
    """

    def register(handler: Handler) -> Handler:
        key = canonical(name)
        if key in METHODS:
            raise RuntimeError(f"method {name} registered twice")
        METHODS[key] = MethodSpec(name, handler, oauth_only, batchable, scope)
        return handler

    return register


def lookup(name: str) -> MethodSpec | None:
    """The spec for a method name, accepting any case and a ``.json`` suffix."""
    load_methods()
    return METHODS.get(canonical(name))


def dispatch(call: Call) -> Result:
    """Run the handler for ``call.method``; raise ApiError for an unknown method."""
    spec = lookup(call.method)
    if spec is None:
        raise ApiError("ERROR_METHOD_NOT_FOUND", "Method not found!", 404)
    value = spec.handler(call)
    return value if isinstance(value, Result) else Result(value)


def invoke(portal: "Portal", method_name: str, params: dict[str, Any] | None = None, **kw: Any) -> Any:
    """Call a method in-process without HTTP, limits or auth (seed generator, tests); return ``result``."""
    return dispatch(Call(portal, method_name, params or {}, **kw)).result


_loaded = False


def load_methods() -> None:
    """Import every method module so that its handlers register."""
    global _loaded
    if not _loaded:
        _loaded = True
        import connector.emulator.methods  # noqa: F401
