"""Property test of latest wins: random sequences of bot/AI creates (with any creation
time, via ``X-Test-Clock``, so records arrive out of order), deletes of the shown
record and deletes of other records, checked against a model of the RFC rule."""

from __future__ import annotations

import itertools
from datetime import timedelta

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.support import Clocked
from widget.models import rfc3339

ROOM_SEQ = itertools.count()

Op = tuple[str, int]
operations = st.lists(
    st.one_of(
        st.tuples(st.just("create"), st.integers(min_value=0, max_value=50)),  # seconds after a base
        st.tuples(st.just("delete_shown"), st.just(0)),
        st.tuples(st.just("delete_any"), st.integers(min_value=0, max_value=1000)),
        st.tuples(st.just("patch_shown"), st.integers(min_value=0, max_value=3)),
    ),
    min_size=1,
    max_size=12,
)


class Model:
    """The rule: a record takes the slot iff (created_at, id) is above the high-water
    mark, which only moves forward; deleting the shown record empties the slot; the
    version counts snapshot changes."""

    def __init__(self) -> None:
        self.mark: tuple[str, str] | None = None
        self.shown: dict[str, str] | None = None
        self.version = 0
        self.live: list[dict[str, str]] = []

    def created(self, record: dict[str, str]) -> None:
        self.live.append(record)
        key = (record["created_at"], record["id"])
        if self.mark is None or key > self.mark:
            self.mark = key
            self.shown = record
            self.version += 1

    def deleted(self, record: dict[str, str]) -> None:
        self.live.remove(record)
        if self.shown is not None and self.shown["id"] == record["id"]:
            self.shown = None
            self.version += 1

    def renamed(self, record: dict[str, str], name: str) -> None:
        changed = record["name"] != name
        record["name"] = name
        if changed and self.shown is not None and self.shown["id"] == record["id"]:
            self.version += 1


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(ops=operations, kind=st.sampled_from(["deal", "ticket"]))
async def test_room_always_shows_what_the_model_says(clocked: Clocked, ops: list[Op], kind: str) -> None:
    http = clocked.http
    room_id = f"prop-{next(ROOM_SEQ)}"  # the fixture's database is shared by all examples
    model = Model()
    base = clocked.clock.now
    body = {"name": "n", "room_id": room_id}
    body.update({"stage": "s", "pipeline": "p"} if kind == "deal" else {"status": "Open"})
    for step, (op, arg) in enumerate(ops):
        if op == "create":
            at = rfc3339(base + int(timedelta(seconds=arg).total_seconds() * 1_000_000))
            flag = "bot" if step % 2 else "agentic_ai"
            response = await http.post(f"/api/v1/{kind}s", json={**body, "creator_flag": flag},
                                       headers={"X-Test-Clock": at})
            assert response.status_code == 201, response.text
            created = response.json()
            assert created["created_at"] == at
            model.created({"id": created["id"], "created_at": at, "name": created["name"]})
        elif op == "delete_shown":
            if model.shown is None:
                continue
            assert (await http.delete(f"/api/v1/{kind}s/{model.shown['id']}")).status_code == 204
            model.deleted(model.shown)
        elif op == "delete_any":
            if not model.live:
                continue
            victim = model.live[arg % len(model.live)]
            assert (await http.delete(f"/api/v1/{kind}s/{victim['id']}")).status_code == 204
            model.deleted(victim)
        elif op == "patch_shown":
            if model.shown is None:
                continue
            name = f"name-{arg}"
            response = await http.patch(f"/api/v1/{kind}s/{model.shown['id']}", json={"name": name})
            assert response.status_code == 200, response.text
            model.renamed(model.shown, name)

        room = (await http.get(f"/api/v1/rooms/{room_id}")).json()
        assert room["version"] == model.version, (ops[: step + 1], room)
        other = "ticket" if kind == "deal" else "deal"
        assert room[other] is None
        if model.shown is None:
            assert room[kind] is None, (ops[: step + 1], room)
        else:
            assert room[kind] is not None, (ops[: step + 1], room)
            assert room[kind]["id"] == model.shown["id"], (ops[: step + 1], room)
            assert room[kind]["name"] == model.shown["name"]
            assert room[kind]["created_at"] == model.shown["created_at"]
        # The shown record is always the newest live one above the mark, i.e. the
        # newest live record overall, if the mark's own record is still alive.
        if model.live and model.mark is not None:
            newest = max(model.live, key=lambda r: (r["created_at"], r["id"]))
            if (newest["created_at"], newest["id"]) == model.mark:
                assert room[kind]["id"] == newest["id"]
