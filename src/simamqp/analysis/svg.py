"""A sequence diagram of a trace, as one self-contained SVG document (stdlib only).

Lanes, left to right: publishers (connection/channel), exchanges, queues, consumers
(connection/channel/consumer tag, or basic.get). One row per drawn event, time going down
(the broker clock on the left): publish (publisher -> exchange), route (exchange -> each
queue; "unroutable" when none), deliver/get (queue -> consumer), ack/nack/reject (consumer ->
queue, dashed), confirm (exchange -> publisher, dashed), dead-letter (queue -> exchange ->
queues). Faults, errors, lost connections and restarts are red, with the rule's name.

Built with ``xml.etree.ElementTree``, so every name and label is escaped.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Mapping
from typing import Any

from ..core.trace import Event
from .histories import DIRECT_REPLY_TO, events_of

__all__ = ["DRAWN_KINDS", "sequence_diagram"]

#: Event kinds the diagram draws (others, such as declarations, are left out).
DRAWN_KINDS = frozenset(
    {
        "publish",
        "route",
        "return",
        "confirm",
        "deliver",
        "get",
        "ack",
        "nack",
        "reject",
        "recover-requeue",
        "fault-requeue",
        "requeue",
        "expire",
        "drop-head",
        "reject-publish",
        "dead-letter",
        "dead-letter-dropped",
        "fault",
        "fault-release",
        "fault-lost",
        "error",
        "connection-closed",
        "connection-lost",
        "restart",
        "purge",
        "queue-delete",
    }
)
_ALARM = frozenset(
    {
        "fault",
        "fault-lost",
        "error",
        "connection-closed",
        "connection-lost",
        "restart",
        "dead-letter-dropped",
    }
)
_LANE_W = 150
_ROW_H = 22
_TOP = 70
_LEFT = 120
#: Room right of the last lane for the labels of events drawn on it.
_RIGHT = 260
_RED = "#c0392b"
_COLORS = {"publisher": "#2c6e9b", "exchange": "#7a5c99", "queue": "#2e7d32", "consumer": "#b26a00"}


def _select(events: list[Event], max_events: int) -> tuple[list[Event], int]:
    """The events to draw: all when they fit; else every alarm event (faults, errors...) and
    the most recent others, in trace order."""
    drawn = [e for e in events if e.kind in DRAWN_KINDS]
    if len(drawn) <= max_events:
        return drawn, 0
    alarms = [i for i, e in enumerate(drawn) if e.kind in _ALARM][-max_events // 2 :]
    room = max_events - len(alarms)
    keep = set(alarms) | set(range(len(drawn) - room, len(drawn)))
    return [e for i, e in enumerate(drawn) if i in keep], len(drawn) - len(keep)


def sequence_diagram(
    source: Any,
    *,
    title: str = "simamqp trace",
    max_events: int = 400,
    highlight: Iterable[int] = (),
) -> str:
    """The SVG text of a sequence diagram of ``source`` (a ``Broker``, a ``Trace``, or trace
    events as ``build_histories`` takes them). At most ``max_events`` rows: beyond that, the
    faults and errors and the most recent events are drawn, and the header says how many were
    left out. Messages in ``highlight`` (ids) are drawn bold (a checker's lost messages)."""
    events, complete = events_of(source)
    chosen, omitted = _select(events, max_events)
    marked = set(highlight)
    exchange_of: dict[Any, str] = {}
    publisher_of: dict[int, tuple[Any, Any]] = {}
    lanes: dict[str, dict[Any, str]] = {k: {} for k in _COLORS}

    def lane(kind: str, key: Any, label: str) -> None:
        lanes[kind].setdefault(key, label)

    for e in events:  # lanes and names from every event, so a cut diagram still names them
        a = e.attrs
        if e.kind == "publish":
            exchange_of[a["msg"]] = a.get("exchange", "")
            publisher_of[a["msg"]] = (a.get("connection"), a.get("channel"))
    for e in chosen:
        a, kind = e.attrs, e.kind
        if kind == "publish":
            lane(
                "publisher",
                (a.get("connection"), a.get("channel")),
                f"publisher c{a.get('connection')}/ch{a.get('channel')}",
            )
            lane("exchange", a.get("exchange", ""), _ex_label(a.get("exchange", "")))
        elif kind == "route":
            lane(
                "exchange",
                exchange_of.get(a["msg"], "?"),
                _ex_label(exchange_of.get(a["msg"], "?")),
            )
            for q in a.get("queues") or ():
                lane("queue", q, q)
        elif kind in ("deliver", "get"):
            lane("queue", a["queue"], a["queue"])
            lane("consumer", _consumer(a), _consumer_label(a))
        elif kind == "dead-letter":
            lane("queue", a.get("queue"), str(a.get("queue")))
            lane("exchange", a.get("exchange", ""), _ex_label(a.get("exchange", "")))
            for q in a.get("queues") or ():
                lane("queue", q, q)
        elif "queue" in a and isinstance(a["queue"], str) and a["queue"] != DIRECT_REPLY_TO:
            lane("queue", a["queue"], a["queue"])
    xs: dict[tuple[str, Any], float] = {}
    column = 0
    for kind in ("publisher", "exchange", "queue", "consumer"):
        for key in lanes[kind]:
            xs[(kind, key)] = _LEFT + _LANE_W * column + _LANE_W / 2
            column += 1
    width = _LEFT + _LANE_W * max(column, 1) + _RIGHT
    height = _TOP + _ROW_H * (len(chosen) + 1) + 30
    svg = ET.Element(
        "svg",
        {
            "xmlns": "http://www.w3.org/2000/svg",
            "width": str(int(width)),
            "height": str(int(height)),
            "viewBox": f"0 0 {int(width)} {int(height)}",
            "font-family": "monospace",
            "font-size": "11",
        },
    )
    ET.SubElement(svg, "title").text = title
    defs = ET.SubElement(svg, "defs")
    for name, color in (("arrow", "#333"), ("arrow-red", _RED)):
        marker = ET.SubElement(
            defs,
            "marker",
            {
                "id": name,
                "markerWidth": "8",
                "markerHeight": "8",
                "refX": "7",
                "refY": "3",
                "orient": "auto",
            },
        )
        ET.SubElement(marker, "path", {"d": "M0,0 L0,6 L7,3 z", "fill": color})
    ET.SubElement(svg, "rect", {"width": "100%", "height": "100%", "fill": "white"})
    header = f"{title}: {len(chosen)} events"
    if omitted:
        header += f" ({omitted} more left out: faults, errors and the latest are shown)"
    if not complete:
        header += " (windowed trace: earlier events not kept)"
    _text(svg, 8, 16, header, weight="bold")
    _text(svg, 8, _TOP - 8, "time (s)", color="#666")
    bottom = _TOP + _ROW_H * (len(chosen) + 1)
    for (kind, key), x in xs.items():
        label = lanes[kind][key]
        color = _COLORS[kind]
        ET.SubElement(
            svg,
            "rect",
            {
                "x": str(x - _LANE_W / 2 + 6),
                "y": "28",
                "width": str(_LANE_W - 12),
                "height": "24",
                "rx": "4",
                "fill": "white",
                "stroke": color,
            },
        )
        _text(svg, x, 44, _clip(label, 20), anchor="middle", color=color)
        ET.SubElement(
            svg,
            "line",
            {
                "x1": str(x),
                "y1": "52",
                "x2": str(x),
                "y2": str(bottom),
                "stroke": color,
                "stroke-dasharray": "2,3",
                "stroke-opacity": "0.6",
            },
        )

    def at(kind: str, key: Any) -> float | None:
        return xs.get((kind, key))

    for row, e in enumerate(chosen, 1):
        y = _TOP + _ROW_H * row
        a, kind = e.attrs, e.kind
        g = ET.SubElement(svg, "g", {"class": f"event {kind}", "data-seq": str(e.seq)})
        if "msg" in a:
            g.set("data-msg", str(a["msg"]))
        _text(g, 8, y + 4, f"{e.time:.3f} #{e.seq}", color="#666")
        bold = a.get("msg") in marked
        msg = a.get("msg")
        if kind == "publish":
            _arrow(
                g,
                at("publisher", (a.get("connection"), a.get("channel"))),
                at("exchange", a.get("exchange", "")),
                y,
                f"publish m{msg} {_body(a)}",
                bold=bold,
            )
        elif kind == "route":
            src = at("exchange", exchange_of.get(msg, "?"))
            queues = list(a.get("queues") or ())
            if not queues:
                _mark(g, src, y, f"m{msg} unroutable", color="#666")
            for q in queues:
                _arrow(g, src, at("queue", q), y, f"route m{msg}", bold=bold)
        elif kind in ("deliver", "get"):
            label = f"{'get' if kind == 'get' else 'deliver'} m{msg} tag {a.get('delivery_tag')}"
            if a.get("redelivered"):
                label += " redelivered"
            _arrow(g, at("queue", a["queue"]), at("consumer", _consumer(a)), y, label, bold=bold)
        elif kind in ("ack", "nack", "reject", "recover-requeue", "fault-requeue"):
            consumer = _find_consumer(xs, a)
            label = f"{kind} m{msg}" + (f" requeue={a.get('requeue')}" if "requeue" in a else "")
            _arrow(
                g,
                consumer,
                at("queue", a["queue"]),
                y,
                label,
                dashed=True,
                bold=bold,
                red=kind == "fault-requeue",
            )
        elif kind == "confirm":
            # The confirm names the channel only: drawn on the first publisher lane with it.
            publisher = next(
                (
                    x
                    for (k, key), x in xs.items()
                    if k == "publisher" and key[1] == a.get("channel")
                ),
                None,
            )
            _mark(
                g,
                publisher,
                y,
                f"confirm seq {a.get('seq')} {'ack' if a.get('ack') else 'NACK'}",
                color="#2c6e9b",
            )
        elif kind == "return":
            _mark(
                g,
                at("exchange", exchange_of.get(msg, "?")),
                y,
                f"m{msg} returned 312",
                color="#666",
            )
        elif kind == "dead-letter":
            src = at("queue", a.get("queue"))
            dlx = at("exchange", a.get("exchange", ""))
            _arrow(
                g,
                src,
                dlx,
                y,
                f"dead-letter m{msg} ({a.get('reason')}) as m{a.get('new_msg')}",
                dashed=True,
            )
            for q in a.get("queues") or ():
                _arrow(g, dlx, at("queue", q), y, "", dashed=True)
        elif kind == "fault":
            x = _fault_x(xs, a, exchange_of)
            what = f"FAULT {a.get('rule')}: {a.get('point')} {a.get('action')}"
            if msg is not None:
                what += f" m{msg}"
            if a.get("copies"):
                what += f" copies {a.get('copies')}"
            _mark(g, x, y, what, color=_RED, cross=True)
        elif kind in ("error", "connection-closed", "connection-lost"):
            label = f"{kind} conn {a.get('connection')}"
            if "code" in a:
                label += f": {a.get('code')} {a.get('text', '')}"
            xs_conn = [
                x
                for (k, key), x in xs.items()
                if k in ("publisher", "consumer") and key[0] == a.get("connection")
            ]
            _mark(g, xs_conn[0] if xs_conn else _LEFT + 10, y, label, color=_RED, cross=True)
        elif kind == "restart":
            ET.SubElement(
                g,
                "line",
                {
                    "x1": str(_LEFT),
                    "y1": str(y),
                    "x2": str(width - 10),
                    "y2": str(y),
                    "stroke": _RED,
                    "stroke-width": "2",
                },
            )
            _text(g, _LEFT + 4, y - 3, "BROKER RESTART", color=_RED, weight="bold")
        else:
            spot = at("queue", a.get("queue"))
            if kind == "requeue":
                label = "requeue " + " ".join(f"m{m}" for m in a.get("msgs") or ())
            elif kind == "fault-release":
                label = "fault release " + (
                    f"m{msg}" if msg is not None else " ".join(f"m{m}" for m in a.get("msgs") or ())
                )
            elif kind == "fault-lost":
                label = f"LOST m{msg} ({a.get('reason')})"
            else:
                label = f"{kind} " + (f"m{msg}" if msg is not None else str(a.get("count", "")))
            red = kind in _ALARM or kind in ("drop-head", "reject-publish")
            _mark(
                g,
                spot if spot is not None else _fault_x(xs, a, exchange_of),
                y,
                label,
                color=_RED if red else "#555",
                cross=red,
            )
    if marked:
        names = " ".join(f"m{m}" for m in sorted(marked))
        _text(svg, 8, bottom + 20, f"drawn bold: {names}", weight="bold")
    return ET.tostring(svg, encoding="unicode", xml_declaration=False)


def _ex_label(name: Any) -> str:
    return f"exchange {name!s}" if name else "exchange (default)"


def _consumer(a: Mapping[str, Any]) -> tuple[Any, Any, Any]:
    return (a.get("connection"), a.get("channel"), a.get("consumer_tag"))


def _consumer_label(a: Mapping[str, Any]) -> str:
    tag = a.get("consumer_tag")
    return f"c{a.get('connection')}/ch{a.get('channel')} " + (str(tag) if tag else "basic.get")


def _find_consumer(xs: Mapping[tuple[str, Any], float], a: Mapping[str, Any]) -> float | None:
    for (kind, key), x in xs.items():
        if kind == "consumer" and key[0] == a.get("connection") and key[1] == a.get("channel"):
            return x
    return None


def _fault_x(
    xs: Mapping[tuple[str, Any], float], a: Mapping[str, Any], exchange_of: Mapping[Any, str]
) -> float:
    for key in ("queue",):
        if a.get(key) is not None and ("queue", a[key]) in xs:
            return xs[("queue", a[key])]
    for q in a.get("queues") or ():
        if ("queue", q) in xs:
            return xs[("queue", q)]
    msg = a.get("msg")
    if msg is not None and ("exchange", exchange_of.get(msg)) in xs:
        return xs[("exchange", exchange_of[msg])]
    if a.get("connection") is not None:
        for (kind, key), x in xs.items():
            if kind in ("publisher", "consumer") and key[0] == a["connection"]:
                return x
    return _LEFT + 10


def _body(a: Mapping[str, Any]) -> str:
    body = a.get("body")
    if isinstance(body, bytes | bytearray):
        try:
            text = bytes(body).decode()
        except UnicodeDecodeError:
            return f"({len(body)} bytes)"
        return repr(_clip(text, 16))
    return ""


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _text(
    parent: ET.Element,
    x: float,
    y: float,
    text: str,
    *,
    anchor: str = "start",
    color: str = "#222",
    weight: str = "normal",
) -> None:
    node = ET.SubElement(
        parent,
        "text",
        {
            "x": f"{x:.1f}",
            "y": f"{y:.1f}",
            "fill": color,
            "text-anchor": anchor,
            "font-weight": weight,
        },
    )
    node.text = text


def _arrow(
    parent: ET.Element,
    x1: float | None,
    x2: float | None,
    y: float,
    label: str,
    *,
    dashed: bool = False,
    bold: bool = False,
    red: bool = False,
) -> None:
    if x1 is None or x2 is None:
        _mark(parent, x1 if x1 is not None else x2, y, label, color="#555")
        return
    color = _RED if red else "#333"
    attrs = {
        "x1": f"{x1:.1f}",
        "y1": f"{y:.1f}",
        "x2": f"{x2 - (6 if x2 > x1 else -6):.1f}",
        "y2": f"{y:.1f}",
        "stroke": color,
        "stroke-width": "2.5" if bold else "1.2",
        "marker-end": "url(#arrow-red)" if red else "url(#arrow)",
    }
    if dashed:
        attrs["stroke-dasharray"] = "4,3"
    if x1 == x2:
        attrs["x2"] = f"{x1 + 12:.1f}"
    ET.SubElement(parent, "line", attrs)
    _text(parent, min(x1, x2) + 6, y - 4, label, color=color, weight="bold" if bold else "normal")


def _mark(
    parent: ET.Element, x: float | None, y: float, label: str, *, color: str, cross: bool = False
) -> None:
    x = _LEFT + 10 if x is None else x
    if cross:
        for dx in (-5, 5):
            ET.SubElement(
                parent,
                "line",
                {
                    "x1": f"{x - dx:.1f}",
                    "y1": f"{y - 5:.1f}",
                    "x2": f"{x + dx:.1f}",
                    "y2": f"{y + 5:.1f}",
                    "stroke": color,
                    "stroke-width": "2",
                },
            )
    else:
        ET.SubElement(
            parent, "circle", {"cx": f"{x:.1f}", "cy": f"{y:.1f}", "r": "3", "fill": color}
        )
    _text(parent, x + 9, y + 4, label, color=color, weight="bold" if cross else "normal")
