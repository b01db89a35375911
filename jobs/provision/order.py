"""The legal order of stage writes: Bitrix24 keeps in-progress stages below the single success stage and
failure stages above it (by SORT), and every intermediate state of an apply must obey that too.
"""

from __future__ import annotations

State = dict[str, tuple[str, int]]  # stage key -> (semantics, sort)


def legal_sort(semantics: str, wanted: int, success: int | None) -> int:
    """A SORT for a new stage that the portal accepts now: in progress below the success stage,
    failure above it. Fixed to the wanted value by the later update pass."""
    if success is None:
        return wanted
    if semantics == "process" and wanted >= success:
        return max(success - 1, 1)
    if semantics == "failure" and wanted <= success:
        return success + 1
    return wanted


def is_legal(state: State) -> bool:
    """True when every in-progress stage sorts below the success stage and every failure stage above it."""
    success = [sort for semantics, sort in state.values() if semantics == "success"]
    if not success:
        return True
    s = success[0]
    return all(
        (semantics != "process" or sort < s) and (semantics != "failure" or sort > s)
        for semantics, sort in state.values()
    )


def legal_order(state: State, targets: dict[str, int]) -> list[str]:
    """An order of sort updates keeping every intermediate state legal (greedy; always progresses when
    the final state is legal: failures rise first, in-progress stages drop first, the success stage
    moves when its neighbours allow). Falls back to the given order for a portal already out of order."""
    state = dict(state)
    pending = list(targets)
    order: list[str] = []
    while pending:
        for code in pending:
            trial = dict(state)
            trial[code] = (state[code][0], targets[code])
            if is_legal(trial):
                state = trial
                order.append(code)
                pending.remove(code)
                break
        else:
            order += pending
            break
    return order
