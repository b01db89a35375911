"""The ``batch`` method: up to 50 commands run in order, ``$result[...]`` references between them.

``run_batch`` is the whole protocol with the execution of one command passed in, so the HTTP app
(auth, limits, stats per command) and the in-process ``registry.invoke(portal, "batch", ...)`` share it.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from connector.emulator.registry import ApiError, Call, Result, by_name, dispatch, method
from connector.encoding import MAX_DEPTH, MAX_PAIRS, decode_query, scalar_to_str

MAX_COMMANDS = 50

# the parts of earlier replies a command may reference: $result[cmd][...], $result_total[cmd], ...
_REFERENCE = re.compile(r"\$(result(?:_error|_total|_next|_time)?)((?:\[[^\[\]]*\])+)")


@dataclass
class Outcome:
    """What one command produced: a Result and its time block, or an ApiError."""

    result: Result | None = None
    time: dict[str, Any] | None = None
    error: ApiError | None = None
    cost: float = 0.0  # modelled seconds the command was billed (the latency model reads it)


Execute = Callable[[str, dict[str, Any]], Outcome]


def is_true(value: Any) -> bool:
    """PHP-ish truth of a flag parameter: true/1/"Y"/"true" are true."""
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "y", "yes", "on")
    return bool(value)


def commands_of(cmd: Any) -> tuple[list[tuple[str, str]], bool]:
    """The (key, "method?query") pairs of ``cmd`` and whether it was given as an array."""
    if cmd in (None, "", [], {}):
        return [], False
    if isinstance(cmd, list):
        return [(str(i), str(v)) for i, v in enumerate(cmd)], True
    if isinstance(cmd, dict):
        return [(str(k), str(v)) for k, v in cmd.items()], False
    raise ApiError("INVALID_REQUEST", "Parameter 'cmd' must be an array.")


def split_command(text: str) -> tuple[str, dict[str, Any]]:
    """``"crm.deal.list?filter[>ID]=5"`` -> (method, decoded params); references stay as text.

    Parameters that cannot be read (nested deeper than the encoder allows) are a 400 for the batch.
    """
    name, _, query = text.partition("?")
    try:
        params = by_name(decode_query(query))
    except ValueError:
        raise ApiError("INVALID_REQUEST", f"A batch command's parameters cannot be read: nested deeper than "
                       f"{MAX_DEPTH} levels, more than {MAX_PAIRS} of them, or malformed", 400) from None
    params.pop("auth", None)  # a command runs with the batch's own auth
    return name.strip(), params


def _follow(node: Any, path: list[str]) -> Any:
    for step in path:
        if isinstance(node, list):
            if not step.lstrip("-").isdigit() or not -len(node) <= int(step) < len(node):
                return None
            node = node[int(step)]
        elif isinstance(node, dict):
            if step in node:
                node = node[step]
            elif step.isdigit() and int(step) in node:
                node = node[int(step)]
            else:
                return None
        else:
            return None
    return node


def substitute(value: Any, parts: dict[str, dict[str, Any]]) -> Any:
    """Replace ``$result[cmd][field]...`` references in every string value of nested params.

    A value that is exactly one reference takes the referenced value itself (an array stays an
    array); references inside longer text are replaced by their text. Unknown references become "".
    """
    if isinstance(value, dict):
        return {k: substitute(v, parts) for k, v in value.items()}
    if isinstance(value, list):
        return [substitute(v, parts) for v in value]
    if not isinstance(value, str) or "$result" not in value:
        return value

    def lookup(match: re.Match[str]) -> Any:
        path = re.findall(r"\[([^\[\]]*)\]", match.group(2))
        return _follow(parts.get(match.group(1), {}), path)

    whole = _REFERENCE.fullmatch(value)
    if whole:
        found = lookup(whole)
        return "" if found is None else found
    return _REFERENCE.sub(lambda m: _text(lookup(m)), value)


def _text(value: Any) -> str:
    if isinstance(value, (dict, list)):
        return "Array"  # what PHP prints for an array in a string
    return scalar_to_str(value)


def php_array(mapping: dict[str, Any]) -> Any:
    """A PHP array as json_encode prints it: keys exactly 0..n-1 give a list, anything else an object."""
    if [str(i) for i in range(len(mapping))] == list(mapping):
        return list(mapping.values())
    return mapping


def run_batch(params: dict[str, Any], execute: Execute) -> dict[str, Any]:
    """Run a batch: parse ``cmd`` and ``halt``, execute each command in order, assemble the reply.

    ``execute(method, params)`` runs one command and returns its Outcome; it also refuses methods
    that cannot be batched. Raises ApiError for a batch longer than 50 commands (HTTP 400) and for
    a command whose parameters cannot be read; every command is read before the first one runs.
    """
    lowered = {str(k).lower(): v for k, v in params.items()}
    commands, _ = commands_of(lowered.get("cmd"))
    halt = is_true(lowered.get("halt", False))
    if len(commands) > MAX_COMMANDS:
        raise ApiError("ERROR_BATCH_LENGTH_EXCEEDED", "Max batch length exceeded")
    parts: dict[str, dict[str, Any]] = {
        "result": {}, "result_error": {}, "result_total": {}, "result_next": {}, "result_time": {}
    }
    for key, (name, command_params) in [(key, split_command(text)) for key, text in commands]:
        outcome = execute(name, substitute(command_params, parts))
        if outcome.error is not None:
            parts["result_error"][key] = {
                "error": outcome.error.code,
                "error_description": outcome.error.description,
            }
            if halt:
                break
            continue
        assert outcome.result is not None
        parts["result"][key] = outcome.result.result
        if outcome.result.total is not None:
            parts["result_total"][key] = outcome.result.total
        if outcome.result.next is not None:
            parts["result_next"][key] = outcome.result.next
        if outcome.time is not None:
            parts["result_time"][key] = outcome.time
    return {name: php_array(part) for name, part in parts.items()}


def refuse_unbatchable(name: str) -> ApiError | None:
    """The error a command gets when its method may not run inside a batch, else None."""
    from connector.emulator.registry import lookup

    spec = lookup(name)
    if name.strip().lower() == "batch" or (spec is not None and not spec.batchable):
        return ApiError("ERROR_BATCH_METHOD_NOT_ALLOWED", "Method is not allowed for batch usage")
    return None


@method("batch", batchable=False, scope="basic")
def batch(call: Call) -> dict[str, Any]:
    """In-process batch (``registry.invoke``): no limits or stats; the HTTP app runs its own executor."""

    def execute(name: str, params: dict[str, Any]) -> Outcome:
        refused = refuse_unbatchable(name)
        if refused is not None:
            return Outcome(error=refused)
        inner = Call(call.portal, name, params, user_id=call.user_id, auth=call.auth, app=call.app)
        try:
            return Outcome(result=dispatch(inner))
        except ApiError as exc:
            return Outcome(error=exc)

    return run_batch(call.params, execute)
