"""The simulator: plays Chatbot / Agentic AI against the widget's record API from
this backend (the API key never reaches the browser)."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from examples.host_page.context import (
    HostError,
    HostState,
    Unreachable,
    WidgetCalls,
    bool_field,
    host_state,
    read_json_object,
    record_summary,
    text_field,
    widget_client,
)
from examples.host_page.demo import (
    DEAL_PIPELINES,
    DEAL_STAGES,
    TICKET_STATUSES,
    Room,
    rfc3339,
)

# -- the simulator (Chatbot / Agentic AI) ------------------------------------------------


@dataclass
class SimOptions:
    room: Room
    use_room: bool
    with_contact: bool
    source: str
    deal_name: str
    deal_stage: str
    deal_pipeline: str
    ticket_name: str
    ticket_status: str
    backdate_seconds: int

    @classmethod
    def parse(cls, state: HostState, data: dict[str, Any]) -> SimOptions:
        room_id = text_field(data, "room_id", "")
        room = state.room(room_id, create=False)
        if room is None:
            raise HostError(404, f"unknown room {room_id!r} (open it in the inbox first)")
        backdate = data.get("backdate_seconds", 0) or 0
        if isinstance(backdate, str) and backdate.strip().isdigit():
            backdate = int(backdate)
        if not isinstance(backdate, int) or isinstance(backdate, bool) or not 0 <= backdate <= 86_400 * 365:
            raise HostError(422, "backdate_seconds must be a whole number of seconds ≥ 0")
        return cls(
            room=room,
            use_room=bool_field(data, "use_room", True),
            with_contact=bool_field(data, "with_contact", True),
            source=text_field(data, "source", "whatsapp"),
            deal_name=text_field(data, "deal_name", room.deal_name),
            deal_stage=text_field(data, "deal_stage", DEAL_STAGES[0]),
            deal_pipeline=text_field(data, "deal_pipeline", DEAL_PIPELINES[0]),
            ticket_name=text_field(data, "ticket_name", room.ticket_name),
            ticket_status=text_field(data, "ticket_status", TICKET_STATUSES[0]),
            backdate_seconds=backdate,
        )


class SimOutcome(Exception):
    """Stops an action with a message and a status (e.g. 409: nothing shown)."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


class Simulator:
    def __init__(self, state: HostState, calls: WidgetCalls, opts: SimOptions) -> None:
        self.state = state
        self.calls = calls
        self.opts = opts
        self.records: list[dict[str, Any]] = []

    async def contact_id(self) -> str:
        """The room's demo contact, created once per room through the record API."""
        room = self.opts.room
        lock = self.state.contact_locks.setdefault(room.id, asyncio.Lock())
        async with lock:
            if room.id in self.state.contacts:
                return self.state.contacts[room.id]
            body: dict[str, Any] = {"name": room.customer}
            if room.channel == "whatsapp":
                body["phone"] = room.handle
            if room.email:
                body["email"] = room.email
            response, entry = await self.calls.request("POST", "/api/v1/contacts", json_body=body)
            if response.status_code != 201:
                raise SimOutcome(502, f"could not create the demo contact: {entry['error']}")
            contact = response.json()
            entry["summary"] = {"kind": "contact", "id": contact["id"], "name": contact["name"]}
            self.state.contacts[room.id] = contact["id"]
            return contact["id"]

    async def create(self, kind: str, creator: str | None, name_suffix: str = "", contact: str | None = None) -> None:
        opts = self.opts
        body: dict[str, Any]
        if kind == "deal":
            body = {"name": opts.deal_name + name_suffix, "stage": opts.deal_stage, "pipeline": opts.deal_pipeline}
        else:
            body = {"name": opts.ticket_name + name_suffix, "status": opts.ticket_status}
        if creator:
            body["creator_flag"] = creator
        if opts.use_room:
            body["room_id"] = opts.room.id
        if opts.with_contact:
            body["contact_id"] = contact if contact is not None else await self.contact_id()
        if opts.source:
            body["source"] = opts.source
        headers = {}
        if opts.backdate_seconds:
            created = datetime.now(UTC) - timedelta(seconds=opts.backdate_seconds)
            headers["X-Test-Clock"] = rfc3339(created)
        response, entry = await self.calls.request("POST", f"/api/v1/{kind}s", json_body=body, headers=headers)
        if response.status_code == 201:
            record = record_summary(kind, response.json())
            entry["summary"] = record
            self.records.append(record)

    async def shown(self, kind: str) -> dict[str, Any]:
        room_id = self.opts.room.id
        response, entry = await self.calls.request("GET", f"/api/v1/rooms/{room_id}")
        if response.status_code != 200:
            raise SimOutcome(502, f"could not read the room: {entry['error']}")
        snapshot = response.json()
        entry["summary"] = {"kind": "room", "version": snapshot.get("version"),
                                           "deal": (snapshot.get("deal") or {}).get("id"),
                                           "ticket": (snapshot.get("ticket") or {}).get("id")}
        record = snapshot.get(kind)
        if not record:
            raise SimOutcome(409, f"No {kind} is shown in room {room_id}: create one first")
        return record

    async def update(self, kind: str) -> None:
        record = await self.shown(kind)
        if kind == "deal":
            cycle, key = DEAL_STAGES, "stage"
        else:
            cycle, key = TICKET_STATUSES, "status"
        current = record.get(key)
        following = cycle[(cycle.index(current) + 1) % len(cycle)] if current in cycle else cycle[0]
        response, entry = await self.calls.request(
            "PATCH", f"/api/v1/{kind}s/{record['id']}", json_body={key: following})
        if response.status_code == 200:
            summary = record_summary(kind, response.json())
            entry["summary"] = summary
            self.records.append(summary)

    async def delete(self, kind: str) -> None:
        record = await self.shown(kind)
        response, entry = await self.calls.request("DELETE", f"/api/v1/{kind}s/{record['id']}")
        if response.status_code == 204:
            summary = {"kind": kind, "id": record["id"], "name": record.get("name"), "deleted": True}
            entry["summary"] = summary
            self.records.append(summary)

    async def two_at_once(self) -> None:
        contact = await self.contact_id() if self.opts.with_contact else None
        results = await asyncio.gather(
            self.create("deal", "bot", " · Bot", contact),
            self.create("deal", "agentic_ai", " · AI", contact),
            return_exceptions=True,
        )
        for result in results:
            if isinstance(result, BaseException):
                raise result


SIM_ACTIONS: dict[str, tuple[str, Callable[[Simulator], Awaitable[None]]]] = {
    "deal-bot": ("Create deal as Bot", lambda s: s.create("deal", "bot")),
    "deal-ai": ("Create deal as AI", lambda s: s.create("deal", "agentic_ai")),
    "ticket-bot": ("Create ticket as Bot", lambda s: s.create("ticket", "bot")),
    "ticket-ai": ("Create ticket as AI", lambda s: s.create("ticket", "agentic_ai")),
    "deal-manual": ("Manual deal (no creator)", lambda s: s.create("deal", None)),
    "update-deal": ("Update shown deal", lambda s: s.update("deal")),
    "update-ticket": ("Update shown ticket", lambda s: s.update("ticket")),
    "delete-deal": ("Delete shown deal", lambda s: s.delete("deal")),
    "delete-ticket": ("Delete shown ticket", lambda s: s.delete("ticket")),
    "two-at-once": ("Two creations at once", lambda s: s.two_at_once()),
}


async def simulate(request: Request) -> Response:
    action = request.path_params["action"]
    if action not in SIM_ACTIONS:
        raise HostError(404, f"no simulator action {action!r}")
    label, run = SIM_ACTIONS[action]
    state = host_state(request)
    opts = SimOptions.parse(state, await read_json_object(request))
    sim = Simulator(state, WidgetCalls(widget_client(request)), opts)
    status, message = 200, ""
    try:
        await run(sim)
    except Unreachable as exc:
        status, message = 502, str(exc)
    except SimOutcome as exc:
        status, message = exc.status, exc.message
    ok = status == 200 and sim.calls.ok
    if status == 200 and not ok:
        status = 502
        message = next(c["error"] for c in sim.calls.calls if c["error"])
    return JSONResponse(
        {"action": action, "label": label, "ok": ok, "message": message or "done",
         "room_id": opts.room.id, "calls": sim.calls.calls, "records": sim.records},
        status_code=status,
    )

