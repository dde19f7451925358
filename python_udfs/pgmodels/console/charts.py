"""The console's charts, drawn on the server as inline SVG: no JavaScript, no CDN, nothing
to download, so a page works offline and prints. Every label is escaped. Each chart has
a class (``chart line``, ``chart bars``, ...) and its marks have classes too, which the
browser tests count."""

from __future__ import annotations

from html import escape

W, H, PAD = 560, 180, 34
WIDE = 46  # the left margin of charts whose ticks run to four decimals (PSI, seconds per run)


def _frame(body: str, kind: str, title: str, width: int = W, height: int = H) -> str:
    return (f'<svg class="chart {kind}" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
            f'xmlns="http://www.w3.org/2000/svg"><title>{escape(title)}</title>{body}</svg>')


def _scale(lo: float, hi: float, a: float, b: float):
    span = (hi - lo) or 1.0
    return lambda v: a + (v - lo) / span * (b - a)


def _axis(lo: float, hi: float, y, width: int, pad: int = PAD) -> str:
    out = []
    for v in (lo, (lo + hi) / 2, hi):
        out.append(f'<line class="grid" x1="{pad}" x2="{width - 8}" y1="{y(v):.1f}" y2="{y(v):.1f}"/>'
                   f'<text class="tick" x="{pad - 4}" y="{y(v) + 4:.1f}" text-anchor="end">{_fmt(v)}</text>')
    return "".join(out)


def _fmt(v) -> str:
    if v is None:
        return "-"
    v = float(v)
    return f"{v:.3g}" if abs(v) < 1000 else f"{v:,.0f}"


def line(points: list[tuple[str, float | None]], markers: dict[int, str] | None = None, title: str = "",
         highlight: int | None = None) -> str:
    """A metric across versions: one point per (label, value), markers by point index
    ('deployed', 'rolled back'), the highlighted point (the deployed version) ringed."""
    values = [v for _, v in points if v is not None]
    if not values:
        return _frame('<text class="empty" x="20" y="90">no values yet</text>', "line", title)
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.5, hi + 0.5
    n = len(points)
    x = _scale(0, max(n - 1, 1), PAD + 10, W - 20)
    y = _scale(lo, hi, H - 26, 12)
    body = [_axis(lo, hi, y, W)]
    path = " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v) in enumerate(points) if v is not None)
    body.append(f'<polyline class="series" points="{path}"/>')
    for i, (label, v) in enumerate(points):
        body.append(f'<text class="tick" x="{x(i):.1f}" y="{H - 8}" text-anchor="middle">{escape(str(label))}</text>')
        if v is None:
            continue
        ring = " deployed" if i == highlight else ""
        body.append(f'<circle class="point{ring}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="{6 if ring else 4}">'
                    f'<title>{escape(str(label))}: {_fmt(v)}</title></circle>')
    for i, kind in (markers or {}).items():
        cls = "rollback" if "roll" in kind else "deploy"
        body.append(f'<path class="marker {cls}" d="M{x(i) - 5:.1f},8 L{x(i) + 5:.1f},8 L{x(i):.1f},16 Z">'
                    f'<title>{escape(kind)}</title></path>')
    return _frame("".join(body), "line", title)


def timeseries(points: list[tuple[float, float]], title: str = "", unit: str = "") -> str:
    """Values over time (seconds since the window's start on x)."""
    if not points:
        return _frame('<text class="empty" x="20" y="90">no samples in the last hour</text>', "timeseries", title)
    xs, ys = [p[0] for p in points], [p[1] for p in points]
    lo, hi = min(0.0, min(ys)), max(ys) or 1.0
    x = _scale(min(xs), max(xs) if max(xs) > min(xs) else min(xs) + 1, PAD + 10, W - 20)
    y = _scale(lo, hi, H - 26, 12)
    path = " ".join(f"{x(a):.1f},{y(b):.1f}" for a, b in points)
    return _frame(_axis(lo, hi, y, W) + f'<polyline class="series" points="{path}"/>'
                  f'<text class="tick" x="{W - 20}" y="{H - 8}" text-anchor="end">{escape(unit)}</text>',
                  "timeseries", title)


def bars(items: list[tuple[str, float]], title: str = "") -> str:
    """Horizontal bars, largest first (feature importances)."""
    items = sorted(items, key=lambda kv: -abs(kv[1]))[:20]
    height = 18 * len(items) + 10
    top = max((abs(v) for _, v in items), default=1.0) or 1.0
    body = []
    for i, (label, v) in enumerate(items):
        w = (W - 190) * abs(v) / top
        body.append(f'<text class="tick" x="150" y="{18 * i + 17}" text-anchor="end">{escape(label[:24])}</text>'
                    f'<rect class="bar" x="156" y="{18 * i + 5}" width="{w:.1f}" height="13"><title>'
                    f'{escape(label)}: {_fmt(v)}</title></rect>')
    return _frame("".join(body), "bars", title, height=max(height, 30))


def compare(labels: list[str], reference: list[float], current: list[float] | None, title: str = "") -> str:
    """Two distributions over the same bins: the training reference and the current data."""
    n = len(labels)
    if n == 0:
        return _frame('<text class="empty" x="20" y="90">no profile</text>', "compare", title)
    top = max(list(reference) + list(current or [])) or 1.0
    y = _scale(0, top, H - 26, 12)
    slot = (W - PAD - 20) / n
    body = [_axis(0, top, y, W)]
    for i, label in enumerate(labels):
        x0 = PAD + 10 + i * slot
        r = reference[i]
        body.append(f'<rect class="bar reference" x="{x0:.1f}" y="{y(r):.1f}" width="{slot * 0.42:.1f}" '
                    f'height="{max(y(0) - y(r), 0):.1f}"><title>training {escape(label)}: {_fmt(r)}</title></rect>')
        if current is not None:
            c = current[i]
            body.append(f'<rect class="bar current" x="{x0 + slot * 0.45:.1f}" y="{y(c):.1f}" '
                        f'width="{slot * 0.42:.1f}" height="{max(y(0) - y(c), 0):.1f}"><title>current '
                        f'{escape(label)}: {_fmt(c)}</title></rect>')
        if n <= 12:
            body.append(f'<text class="tick" x="{x0 + slot * 0.45:.1f}" y="{H - 8}" text-anchor="middle">'
                        f'{escape(label[:10])}</text>')
    return _frame("".join(body), "compare", title)


def _every(n: int, room: float, width: float) -> set[int]:
    """Which of n evenly spaced marks get a label ``width`` wide: as many as fit in
    ``room``, counted back from the newest (the last), which always has one."""
    step = max(1, -(-int(n * width) // max(int(room), 1)))
    return {i for i in range(n) if (n - 1 - i) % step == 0}


def _when(value) -> str:
    """A timestamp as the pages show it: 2026-12-07 10:00:03."""
    return str(value or "")[:19].replace("T", " ")


def psi(points: list[tuple[int, float | None, str | None]], title: str = "",
        thresholds: dict | None = None) -> str:
    """A feature's PSI across reports, oldest left: (report id, PSI, status) per report.
    PSI is never negative, so the axis starts at 0, and it reaches the project's warning
    threshold at least (drawn, with the drift threshold when it fits), so that a flat
    series near 0 reads as what it is. One report is no series: it says so, with its value."""
    known = [(rid, v, st) for rid, v, st in points if v is not None]
    if not known:
        return _frame('<text class="empty" x="20" y="40">no PSI in these reports</text>', "psi", title, height=60)
    if len(known) == 1:
        rid, v, st = known[0]
        return _frame(f'<text class="empty" x="{WIDE}" y="24">one report so far: PSI {_fmt(v)} in report #{rid}'
                      f'{f" ({escape(st)})" if st else ""}</text>', "psi one", title, height=36)
    limits = {k: float(v) for k, v in (thresholds or {}).items() if k in ("psi_warning", "psi_drift") and v}
    top = max(max(v for _, v, _ in known) * 1.15, limits.get("psi_warning", 0.0)) or 1.0
    y = _scale(0.0, top, H - 26, 12)
    x = _scale(0, len(known) - 1, WIDE + 14, W - 24)
    body = [_axis(0.0, top, y, W, WIDE)]
    drift = y(limits["psi_drift"]) if "psi_drift" in limits else None
    for name, value in sorted(limits.items()):
        if value <= top:
            kind = name.split("_")[1]
            # named at the right, above its line (the warning's below when the drift line is close above)
            below = kind == "warning" and drift is not None and 0 < y(value) - drift < 14
            body.append(f'<line class="threshold {kind}" x1="{WIDE}" x2="{W - 8}" y1="{y(value):.1f}" y2="{y(value):.1f}">'
                        f'<title>{kind} threshold {_fmt(value)}</title></line>'
                        f'<text class="tick threshold {kind}" x="{W - 10}" y="{y(value) + (11 if below else -3):.1f}" '
                        f'text-anchor="end">{kind} {_fmt(value)}</text>')
    body.append('<polyline class="series" points="'
                + " ".join(f"{x(i):.1f},{y(v):.1f}" for i, (_, v, _) in enumerate(known)) + '"/>')
    labelled = _every(len(known), W - WIDE - 38, 40)
    for i, (rid, v, st) in enumerate(known):
        body.append(f'<circle class="point {escape(st or "")}" cx="{x(i):.1f}" cy="{y(v):.1f}" r="4">'
                    f'<title>report #{rid}: PSI {_fmt(v)}{f" ({escape(st)})" if st else ""}</title></circle>')
        if i in labelled:
            body.append(f'<text class="tick" x="{x(i):.1f}" y="{H - 8}" text-anchor="middle">#{rid}</text>')
    return _frame("".join(body), "psi", title)


def timeline(runs: list[dict], title: str = "") -> str:
    """Batch runs, oldest left: one bar per run, its height the duration, its colour the
    status, labelled under it with its run id and start time (as many as fit, the newest
    always); every run's id, start, status, rows and duration are also in the chart's
    description and each bar's title, for a screen reader and a mouse."""
    if not runs:
        return _frame('<text class="empty" x="20" y="90">no runs yet</text>', "timeline", title)
    height = H + 16
    top = max(r["seconds"] or 0 for r in runs) or 1.0
    y = _scale(0, top, height - 40, 22)
    slot = (W - WIDE - 20) / len(runs)
    body = [_axis(0, top, y, W, WIDE)]
    said = []
    labelled = _every(len(runs), W - WIDE - 20, 64)
    for i, r in enumerate(runs):
        s = r["seconds"] or 0
        started = _when(r.get("started_at"))
        about = (f'run {r["run_id"]}, started {started or "not yet"}: {r["status"]}, '
                 f'{r["rows"] if r["rows"] is not None else "no"} rows in {_fmt(s)} s')
        said.append(about)
        left = WIDE + 10 + i * slot
        body.append(f'<rect class="run {escape(r["status"])}" x="{left:.1f}" y="{y(s):.1f}" '
                    f'width="{max(slot * 0.8, 1):.1f}" height="{max(y(0) - y(s), 1):.1f}"><title>{escape(about)}'
                    f'</title></rect>')
        if i in labelled:
            middle = left + max(slot * 0.8, 1) / 2
            body.append(f'<text class="tick run-label" x="{middle:.1f}" y="{height - 22}" text-anchor="middle">'
                        f'#{r["run_id"]}</text><text class="tick run-time" x="{middle:.1f}" y="{height - 10}" '
                        f'text-anchor="middle">{escape(started[5:16])}</text>')
    body.insert(0, f'<desc>{escape("; ".join(said))}</desc>')
    body.append(f'<text class="tick" x="{W - 8}" y="{12}" text-anchor="end">seconds per run</text>')
    return _frame("".join(body), "timeline", title, height=height)


def importance(items: list[tuple[str, float]], title: str = "") -> str:
    """Global importance, the mean |contribution| of each feature, largest first."""
    items = sorted(items, key=lambda kv: -abs(kv[1]))[:20]
    height = 18 * len(items) + 10
    top = max((abs(v) for _, v in items), default=1.0) or 1.0
    body = []
    for i, (label, v) in enumerate(items):
        w = (W - 190) * abs(v) / top
        body.append(f'<text class="tick" x="150" y="{18 * i + 17}" text-anchor="end">{escape(label[:24])}</text>'
                    f'<rect class="bar" x="156" y="{18 * i + 5}" width="{w:.1f}" height="13"><title>'
                    f'{escape(label)}: mean |contribution| {_fmt(v)}</title></rect>')
    return _frame("".join(body), "importance", title, height=max(height, 30))


def waterfall(base: float, steps: list[tuple[str, str | None, float]], title: str = "") -> str:
    """One prediction, feature by feature: from the base, each contribution a bar that goes
    up (rect.step.up) or down (rect.step.down) from where the previous one ended, and the
    total at the bottom (rect.total)."""
    rows = [("(base)", None, base)] + steps
    ends, at = [], 0.0
    for i, (_, _, v) in enumerate(rows):
        start = 0.0 if i == 0 else at
        at = v if i == 0 else at + v
        ends.append((start, at))
    total = at
    lo = min([0.0, total] + [min(a, b) for a, b in ends])
    hi = max([0.0, total] + [max(a, b) for a, b in ends])
    x = _scale(lo, hi, 200, W - 60)
    height = 20 * (len(rows) + 1) + 24
    body = [f'<line class="grid" x1="{x(0):.1f}" x2="{x(0):.1f}" y1="4" y2="{height - 18}"/>']
    for i, ((label, value, v), (a, b)) in enumerate(zip(rows, ends)):
        kind = "base" if i == 0 else ("up" if v >= 0 else "down")
        left, width = min(x(a), x(b)), max(abs(x(b) - x(a)), 1.0)
        text = label if value is None else f"{label} = {value}"
        body.append(f'<text class="tick" x="194" y="{20 * i + 17}" text-anchor="end">{escape(text[:30])}</text>'
                    f'<rect class="step {kind}" x="{left:.1f}" y="{20 * i + 5}" width="{width:.1f}" height="14">'
                    f'<title>{escape(text)}: {"+" if v >= 0 and i else ""}{_fmt(v)}</title></rect>'
                    f'<text class="value" x="{max(x(a), x(b)) + 4:.1f}" y="{20 * i + 17}">'
                    f'{"+" if v >= 0 and i else ""}{_fmt(v)}</text>')
    n = len(rows)
    left, width = min(x(0), x(total)), max(abs(x(total) - x(0)), 1.0)
    body.append(f'<text class="tick" x="194" y="{20 * n + 17}" text-anchor="end">total</text>'
                f'<rect class="total" x="{left:.1f}" y="{20 * n + 5}" width="{width:.1f}" height="14">'
                f'<title>total: {_fmt(total)}</title></rect>'
                f'<text class="value" x="{max(x(0), x(total)) + 4:.1f}" y="{20 * n + 17}">{_fmt(total)}</text>'
                + _axis_line(lo, hi, x, height))
    return _frame("".join(body), "waterfall", title, height=height)


def _axis_line(lo: float, hi: float, x, height: int) -> str:
    return "".join(f'<text class="tick" x="{x(v):.1f}" y="{height - 4}" text-anchor="middle">{_fmt(v)}</text>'
                   for v in (lo, (lo + hi) / 2, hi))


def intervals(series: dict[str, list[tuple[str, float | None, float | None, float | None]]], title: str = "") -> str:
    """A metric per evaluation for each version of a rollout: one point per (label, value,
    low, high), its interval drawn as a vertical bar; each series has its own class
    (champion, candidate), the two offset a little so their bars do not overlap."""
    values = [v for points in series.values() for _, *vs in points for v in vs if v is not None]
    if not values:
        return _frame('<text class="empty" x="20" y="90">no evaluation with outcomes yet</text>', "intervals", title)
    lo, hi = min(values), max(values)
    if lo == hi:
        lo, hi = lo - 0.05, hi + 0.05
    n = max(len(points) for points in series.values())
    x = _scale(0, max(n - 1, 1), PAD + 16, W - 24)
    y = _scale(lo, hi, H - 26, 12)
    body = [_axis(lo, hi, y, W)]
    labels = next(iter(series.values()))
    shown = _every(n, W - PAD - 40, 64)
    for i, (label, *_rest) in enumerate(labels):
        if i in shown:
            body.append(f'<text class="tick" x="{x(i):.1f}" y="{H - 8}" text-anchor="middle">'
                        f'{escape(str(label))}</text>')
    for k, (name, points) in enumerate(series.items()):
        dx = (k - (len(series) - 1) / 2) * 6
        path = " ".join(f"{x(i) + dx:.1f},{y(v):.1f}" for i, (_, v, _l, _h) in enumerate(points) if v is not None)
        body.append(f'<polyline class="series {escape(name)}" points="{path}"/>')
        for i, (label, v, low, high) in enumerate(points):
            if v is None:
                continue
            if low is not None and high is not None:
                body.append(f'<line class="interval {escape(name)}" x1="{x(i) + dx:.1f}" x2="{x(i) + dx:.1f}" '
                            f'y1="{y(low):.1f}" y2="{y(high):.1f}"/>')
            span = f" [{_fmt(low)}, {_fmt(high)}]" if low is not None and high is not None else ""
            body.append(f'<circle class="point {escape(name)}" cx="{x(i) + dx:.1f}" cy="{y(v):.1f}" r="4">'
                        f'<title>{escape(name)} at {escape(str(label))}: {_fmt(v)}{span}</title></circle>')
    return _frame("".join(body), "intervals", title)


def shares(parts: list[tuple[str, str, float]], title: str = "") -> str:
    """Who answers which share of keys: one stacked bar of (class, label, share) parts."""
    body, x0, room = [], 10.0, W - 20
    for cls, label, share in parts:
        w = room * max(share, 0.0)
        body.append(f'<rect class="share {escape(cls)}" x="{x0:.1f}" y="8" width="{w:.1f}" height="22">'
                    f'<title>{escape(label)}: {share:.0%}</title></rect>')
        if w > 90:
            body.append(f'<text class="tick share-label" x="{x0 + 6:.1f}" y="23">{escape(label)} {share:.0%}</text>')
        x0 += w
    return _frame("".join(body), "shares", title, height=40)
