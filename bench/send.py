"""Mails delivered per second by `mahnwerk tick`, against a raw smtplib loop on the same server.

Run from the repository root:  python bench/send.py [--mails N] [--repeat R]
A state directory of N customers with one due invoice each, the shipped rules.yaml with
`smtp:` pointing at an aiosmtpd server on 127.0.0.1 (its own process by default), and
`Tick(...).run()`: timed whole, and its delivery phase alone, each next to a raw
`smtplib.SMTP` loop (one connection, `sendmail()` of the same messages) in the same run.
Prints a table, where the time of one tick goes, and a last line `RESULT {json}`; never
asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import functools
import gc
import io
import json
import os
import pstats
import shutil
import smtplib
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from email.utils import parseaddr
from pathlib import Path
from typing import Any, Literal, TypeVar

import yaml
from aiosmtpd.smtp import SMTP, Envelope, Session

from _data import DEFAULT_SEED, IMPORT_AT, PLAN_NOW, REFERENCE_DAY, Timing, fmt_s, make_invoices
from mahnwerk import message, outbox
from mahnwerk.config import LoadedRules, load_rules
from mahnwerk.delivery import Tick, TickReport
from mahnwerk.models import Event, Invoice, invoice_to_json
from mahnwerk.render import Renderer
from mahnwerk.smtp import SmtpSession
from mahnwerk.store import TinyDBStore, messages

TARGET_RATIO = 0.5
HOST = "127.0.0.1"
BENCH = Path(__file__).resolve().parent
ROOT = BENCH.parent
RULES = ROOT / "rules.yaml"
# High enough never to throttle a default run (the schema allows at most 10,000).
RATE_PER_MINUTE = 10_000
ServerMode = Literal["process", "thread"]
F = TypeVar("F", bound=Callable[..., Any])


# -- the server ---------------------------------------------------------------------------


class Accept:
    """aiosmtpd handler that takes every message: 250 with a queue id, nothing kept."""

    def __init__(self) -> None:
        self.accepted = 0

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.accepted += 1
        return f"250 2.0.0 Ok: queued as B{self.accepted:08d}"


async def _listen(handler: Accept) -> asyncio.Server:
    loop = asyncio.get_running_loop()
    # A fixed hostname: aiosmtpd would otherwise call getfqdn() for every connection.
    return await loop.create_server(lambda: SMTP(handler, hostname="mx.bench"), HOST, 0)


def serve() -> int:
    """`--serve`: the server process. Prints its port; on EOF of stdin, the count and exits."""
    handler = Accept()

    async def main() -> None:
        server = await _listen(handler)
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.get_running_loop().run_in_executor(None, sys.stdin.read)
        server.close()

    asyncio.run(main())
    print(handler.accepted, flush=True)
    return 0


class Server:
    """A running loopback server: its port, and what it accepted once stopped."""

    def __init__(self, mode: ServerMode) -> None:
        self.mode = mode
        self.port = 0
        self.accepted = -1
        self._proc: subprocess.Popen[str] | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._handler = Accept()

    def start(self) -> None:
        if self.mode == "process":
            self._proc = subprocess.Popen(
                [sys.executable, __file__, "--serve"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
            )
            assert self._proc.stdout is not None
            line = self._proc.stdout.readline()
            if not line.strip().isdigit():
                self._proc.kill()
                self._proc.wait()
                raise SystemExit("the SMTP server process did not start (see its error above)")
            self.port = int(line)
            return
        loop = asyncio.new_event_loop()
        self._server = loop.run_until_complete(_listen(self._handler))
        self.port = self._server.sockets[0].getsockname()[1]
        self._loop = loop
        self._thread = threading.Thread(target=loop.run_forever, name="smtpd", daemon=True)
        self._thread.start()

    def cpu_seconds(self) -> float | None:
        """User + system CPU of the server process so far (None for a thread)."""
        if self._proc is None:
            return None
        try:
            stat = Path(f"/proc/{self._proc.pid}/stat").read_text()
        except OSError:
            return None
        fields = stat.rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")

    def stop(self) -> None:
        if self._proc is not None:
            assert self._proc.stdin is not None and self._proc.stdout is not None
            self._proc.stdin.close()
            line = self._proc.stdout.readline()
            self._proc.wait(timeout=30)
            self.accepted = int(line) if line.strip() else -1
            return
        if self._loop is not None and self._thread is not None and self._server is not None:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._server.close()
            self._loop.run_until_complete(self._server.wait_closed())
            self._loop.close()
            self.accepted = self._handler.accepted


@contextlib.contextmanager
def running(mode: ServerMode) -> Iterator[Server]:
    server = Server(mode)
    server.start()
    try:
        yield server
    finally:
        server.stop()


# -- the workload -------------------------------------------------------------------------


def due_invoices(n: int, seed: int) -> list[Invoice]:
    """N customers with one open invoice each, every one due for a mail on REFERENCE_DAY.

    Names, addresses, languages and amounts from _data.make_invoices; a quarter are due in
    1..7 days (pre_due), the rest 8..37 days overdue (reminder_1).
    """
    out = []
    for i, inv in enumerate(make_invoices(n, n, seed)[:n]):
        terms = inv.due_date - inv.issue_date
        if i % 4 == 0:
            due = REFERENCE_DAY + timedelta(days=1 + i % 7)
        else:
            due = REFERENCE_DAY - timedelta(days=8 + i % 30)
        paid = inv.paid_amount if inv.paid_amount < inv.amount else Decimal("0.00")
        out.append(
            inv._replace(due_date=due, issue_date=due - terms, status="open", paid_amount=paid)
        )
    return out


def populate(state: Path, invoices: list[Invoice]) -> None:
    """A new store holding the invoices as one import, checkpointed."""
    store = TinyDBStore(state)
    try:
        with store.transaction() as tx:
            tx.add_all(
                Event(
                    inv.number,
                    "imported",
                    IMPORT_AT,
                    "imported from bench data",
                    {"invoice": invoice_to_json(inv)},
                )
                for inv in invoices
            )
        store.checkpoint()
    finally:
        store.close()


def bench_rules(folder: Path, port: int) -> LoadedRules:
    """The shipped rules.yaml with smtp: pointing at the loopback server."""
    data = yaml.safe_load(RULES.read_text(encoding="utf-8"))
    data["templates_dir"] = str(ROOT / "templates")
    data["smtp"] = {
        "host": HOST,
        "port": port,
        "security": "none",
        "rate_per_minute": RATE_PER_MINUTE,
    }
    path = folder / "rules.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return load_rules(path)


# -- the disk -----------------------------------------------------------------------------


def filesystem(path: Path) -> tuple[str, str, str]:
    """(mount point, device, type) of the file system holding `path`."""
    best = ("/", "?", "?")
    try:
        lines = Path("/proc/self/mounts").read_text().splitlines()
    except OSError:
        return best
    real = str(path.resolve())
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        dev, mnt, fstype = fields[0], fields[1].replace("\\040", " "), fields[2]
        inside = real == mnt or real.startswith(mnt.rstrip("/") + "/")
        if inside and len(mnt) >= len(best[0]):
            best = (mnt, dev, fstype)
    return best


def fsync_probe(folder: Path, count: int = 50) -> Timing:
    """A small append + fsync on the state's disk: the price of one journal unit's flush."""
    path = folder / "fsync-probe"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    runs = []
    try:
        for _ in range(count):
            start = time.perf_counter()
            os.write(fd, b"x" * 511 + b"\n")
            os.fsync(fd)
            runs.append(time.perf_counter() - start)
    finally:
        os.close(fd)
        path.unlink()
    return Timing(runs)


# -- the measurements ---------------------------------------------------------------------


@dataclass(frozen=True)
class Batch:
    """What one delivery hands over: (recipient, exact bytes) in the order mahnwerk sends."""

    mail_from: str
    mails: list[tuple[str, bytes]]


@dataclass(frozen=True)
class Span:
    """One timed run: wall clock, this process's CPU, and the server process's CPU."""

    wall: float
    client_cpu: float
    server_cpu: float | None


def clocked(server: Server, fn: Callable[[], object]) -> Span:
    gc.collect()
    cpu, served = time.process_time(), server.cpu_seconds()
    start = time.perf_counter()
    fn()
    wall = time.perf_counter() - start
    cpu, after = time.process_time() - cpu, server.cpu_seconds()
    return Span(wall, cpu, None if served is None or after is None else after - served)


def check(report: TickReport, n: int, what: str) -> None:
    sent = report.count("sent")
    if report.errors or sent != n:
        raise SystemExit(f"{what}: {sent} of {n} mails sent; errors: {report.errors[:3]}")


def whole_tick(server: Server, state: Path, loaded: LoadedRules, n: int) -> Span:
    """`Tick(store, loaded, now, environ={}).run()` on a store opened before the clock starts."""
    store = TinyDBStore(state)
    reports: list[TickReport] = []
    try:
        span = clocked(
            server, lambda: reports.append(Tick(store, loaded, PLAN_NOW, environ={}).run())
        )
    finally:
        store.close()
    check(reports[0], n, "whole tick")
    return span


def queued_tick(state: Path, loaded: LoadedRules) -> tuple[TinyDBStore, Tick, Batch]:
    """A tick that has reconciled, tidied, planned and queued, but not delivered yet."""
    store = TinyDBStore(state)
    tick = Tick(store, loaded, PLAN_NOW, environ={})
    tick.reconcile()
    tick.tidy()
    result = tick.plan()
    tick.queue(result.reminders)
    ready = outbox.due(store.view().entries(), PLAN_NOW)
    mail_from = parseaddr(loaded.rules.company.sender)[1]  # the envelope sender, as Tick's
    batch = Batch(mail_from, [(e.to, messages.get(state, e.eml)) for e in ready])
    return store, tick, batch


def deliver_phase(server: Server, store: TinyDBStore, tick: Tick, n: int) -> Span:
    """`Tick.deliver()` with the queue already filled."""
    try:
        span = clocked(server, tick.deliver)
    finally:
        store.close()
    check(tick.report, n, "delivery phase")
    return span


def raw_loop(server: Server, batch: Batch) -> Span:
    """One smtplib connection hands over the same messages (connect .. QUIT)."""

    def send_all() -> None:
        conn = smtplib.SMTP(HOST, server.port, timeout=30)
        try:
            for to, data in batch.mails:
                conn.sendmail(batch.mail_from, [to], data)
        finally:
            conn.quit()

    return clocked(server, send_all)


# -- where the time goes --------------------------------------------------------------------


class Split:
    """Exclusive time per category: a call's time minus that of the timed calls inside it."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._stack: list[list[Any]] = []

    def enter(self, category: str) -> None:
        now = time.perf_counter()
        if self._stack:
            top = self._stack[-1]
            self.seconds[top[0]] += now - top[1]
        self._stack.append([category, now])

    def leave(self) -> None:
        now = time.perf_counter()
        category, since = self._stack.pop()
        self.seconds[category] += now - since
        self.calls[category] += 1
        if self._stack:
            self._stack[-1][1] = now

    def parent(self) -> str | None:
        return self._stack[-1][0] if self._stack else None

    def timed(self, category: str, fn: F) -> F:
        @functools.wraps(fn)
        def wrapper(*args: Any, **kwargs: Any) -> Any:
            self.enter(category)
            try:
                return fn(*args, **kwargs)
            finally:
                self.leave()

        return wrapper  # type: ignore[return-value]


PLAN = "plan (store view + planner)"
TIDY = "reconcile + tidy"
RENDER = "render (Jinja2, 3 templates)"
BUILD = "build message (MIME bytes)"
EML_WRITE = ".eml write (hash, write, fsync in threads)"
EML_READ = ".eml read + sha256 check"
UNIT = "journal units (lock, refresh, commit)"
FSYNC_UNIT = "  fsync of the journal"
FSYNC_EML = "  fsync of .eml file + its folder"
FSYNC_OTHER = "  fsync, other (secret, snapshot)"
SMTP_RT = "SMTP round trips (client + server)"
OTHER = "other (views, outbox, report)"
CATEGORIES = (
    PLAN,
    TIDY,
    RENDER,
    BUILD,
    EML_WRITE,
    FSYNC_EML,
    EML_READ,
    UNIT,
    FSYNC_UNIT,
    FSYNC_OTHER,
    SMTP_RT,
    OTHER,
)
FSYNCS = (FSYNC_UNIT, FSYNC_EML, FSYNC_OTHER)


@contextlib.contextmanager
def instrumented(split: Split) -> Iterator[None]:
    """Wrap the hot functions of one tick with timers; restore them afterwards."""
    original_transaction = TinyDBStore.transaction

    @contextlib.contextmanager
    def transaction(store: TinyDBStore, **kwargs: Any) -> Iterator[Any]:
        split.enter(UNIT)
        try:
            with original_transaction(store, **kwargs) as tx:
                yield tx
        finally:
            split.leave()

    original_fsync = os.fsync

    def fsync(fd: Any) -> None:
        parent = split.parent()
        split.enter(
            FSYNC_UNIT if parent == UNIT else FSYNC_EML if parent == EML_WRITE else FSYNC_OTHER
        )
        try:
            original_fsync(fd)
        finally:
            split.leave()

    patches: list[tuple[Any, str, Any]] = [
        (Tick, "plan", split.timed(PLAN, Tick.plan)),
        (Tick, "reconcile", split.timed(TIDY, Tick.reconcile)),
        (Tick, "tidy", split.timed(TIDY, Tick.tidy)),
        (Renderer, "render", split.timed(RENDER, Renderer.render)),
        (message, "build", split.timed(BUILD, message.build)),
        (messages, "put_many", split.timed(EML_WRITE, messages.put_many)),
        (messages, "get", split.timed(EML_READ, messages.get)),
        (TinyDBStore, "transaction", transaction),
        (os, "fsync", fsync),
        # The attempt's unit runs inside send() (after 354): nested, so not counted twice.
        (SmtpSession, "send", split.timed(SMTP_RT, SmtpSession.send)),
        (SmtpSession, "close", split.timed(SMTP_RT, SmtpSession.close)),
    ]
    saved = [(owner, name, getattr(owner, name)) for owner, name, _ in patches]
    for owner, name, value in patches:
        setattr(owner, name, value)
    try:
        yield
    finally:
        for owner, name, value in saved:
            setattr(owner, name, value)


def where_the_time_goes(
    server: Server, state: Path, loaded: LoadedRules, n: int
) -> tuple[float, Split]:
    split = Split()
    with instrumented(split):
        seconds = whole_tick(server, state, loaded, n).wall
    split.seconds[OTHER] = max(0.0, seconds - sum(split.seconds.values()))
    split.calls[OTHER] = 1
    return seconds, split


def profile_tick(server: Server, state: Path, loaded: LoadedRules, n: int, top: int = 25) -> str:
    profiler = cProfile.Profile()
    profiler.enable()
    whole_tick(server, state, loaded, n)
    profiler.disable()
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    stats.strip_dirs().sort_stats("tottime").print_stats(top)
    return out.getvalue()


# -- the run --------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--mails", type=int, default=500, help="customers, one mail each")
    parser.add_argument("--repeat", type=int, default=3, help="runs, each on a fresh state")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument(
        "--server",
        choices=("process", "thread"),
        default="process",
        help="aiosmtpd in its own process (default) or in a thread of this one",
    )
    parser.add_argument(
        "--tmpdir",
        type=Path,
        default=BENCH,
        help="where the temporary state directories go (default: bench/, the project's disk)",
    )
    parser.add_argument("--no-split", action="store_true", help="skip the per-mail cost split")
    parser.add_argument("--profile", action="store_true", help="also cProfile one whole tick")
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.mails < 1 or args.repeat < 1:
        parser.error("--mails and --repeat must be at least 1")
    return args


def rate(n: int, seconds: float) -> float:
    return n / seconds if seconds > 0 else float("inf")


def cpu_per_mail(spans: list[Span], n: int) -> tuple[float, float | None]:
    """Median CPU per mail of this process and of the server process."""
    client = statistics.median(s.client_cpu for s in spans) / n
    served = [s.server_cpu for s in spans if s.server_cpu is not None]
    return client, (statistics.median(served) / n if served else None)


def main() -> int:
    args = arguments()
    if args.serve:
        return serve()
    n = args.mails
    invoices = due_invoices(n, args.seed)
    spans: dict[str, list[Span]] = {"raw": [], "tick": [], "deliver": []}
    sizes: list[int] = []
    expected = 0
    split: tuple[float, Split] | None = None
    profile = ""
    args.tmpdir.mkdir(parents=True, exist_ok=True)
    with (
        tempfile.TemporaryDirectory(prefix=".send-", dir=args.tmpdir) as tmp_name,
        running(args.server) as server,
    ):
        tmp = Path(tmp_name)
        mount, device, fstype = filesystem(tmp)
        probe = fsync_probe(tmp)
        loaded = bench_rules(tmp, server.port)
        where = "its own process" if args.server == "process" else "a thread of this process"
        print(
            f"{n:,} mails to {n:,} customers, {args.repeat} run(s), each on a fresh state; "
            f"aiosmtpd on {HOST}:{server.port} in {where}"
        )
        print(
            f"state on {fstype} ({device} at {mount}), fsync on: a 512 B append + fsync takes "
            f"{fmt_s(probe.median)} (median of {len(probe.runs)})"
        )
        if fstype in ("tmpfs", "ramfs"):
            print("  WARNING: a memory file system; fsync costs nothing here (use --tmpdir)")
        if n > RATE_PER_MINUTE:
            print(f"  WARNING: over {RATE_PER_MINUTE:,} mails a minute, rate_per_minute throttles")

        for r in range(args.repeat):
            # (b) first: its queue also yields the exact messages the raw loop sends.
            state = tmp / f"deliver-{r}"
            populate(state, invoices)
            store, tick, batch = queued_tick(state, loaded)
            if len(batch.mails) != n:
                store.close()
                raise SystemExit(f"expected {n} queued mails, the tick queued {len(batch.mails)}")
            sizes = [len(data) for _, data in batch.mails]
            # Alternate the order, so that neither side always runs on a warmer machine.
            if r % 2 == 0:
                spans["raw"].append(raw_loop(server, batch))
                spans["deliver"].append(deliver_phase(server, store, tick, n))
            else:
                spans["deliver"].append(deliver_phase(server, store, tick, n))
                spans["raw"].append(raw_loop(server, batch))
            shutil.rmtree(state)

            state = tmp / f"tick-{r}"
            populate(state, invoices)
            spans["tick"].append(whole_tick(server, state, loaded, n))
            shutil.rmtree(state)
            expected += 3 * n
            print(
                f"  run {r + 1}: raw {rate(n, spans['raw'][-1].wall):,.0f}/s, whole tick "
                f"{rate(n, spans['tick'][-1].wall):,.0f}/s, "
                f"delivery {rate(n, spans['deliver'][-1].wall):,.0f}/s"
            )

        if not args.no_split:
            state = tmp / "split"
            populate(state, invoices)
            split = where_the_time_goes(server, state, loaded, n)
            expected += n
        if args.profile:
            state = tmp / "profile"
            populate(state, invoices)
            profile = profile_tick(server, state, loaded, n)
            expected += n

    timings = {key: Timing([s.wall for s in runs]) for key, runs in spans.items()}
    raw, tick_t, deliver = timings["raw"], timings["tick"], timings["deliver"]
    tick_ratio = raw.median / tick_t.median
    deliver_ratio = raw.median / deliver.median

    def verdict(ratio: float) -> str:
        return "ok" if ratio >= TARGET_RATIO else "MISSED"

    def row(label: str, timing: Timing, ratio: float, *, judged: bool = True) -> None:
        target = f"   >= {TARGET_RATIO}  {verdict(ratio)}" if judged else "   (shown)"
        print(
            f"{label:<38}{fmt_s(timing.median):>10}{fmt_s(timing.best):>10}"
            f"{rate(n, timing.median):>10,.0f}{ratio:>8.2f}{target}"
        )

    print()
    print(f"{'measurement':<38}{'median':>10}{'best':>10}{'mails/s':>10}{'ratio':>8}   target")
    row("raw smtplib loop (1 connection)", raw, 1.0, judged=False)
    row("(a) whole tick (plan .. deliver)", tick_t, tick_ratio, judged=False)
    row("(b) delivery phase (Tick.deliver)", deliver, deliver_ratio)
    print(
        f"ratio = mahnwerk's mails/s / the raw loop's (medians); messages "
        f"{statistics.mean(sizes) / 1e3:.1f} kB mean ({min(sizes):,}..{max(sizes):,} B)"
    )
    print(
        "the target is judged on (b): the raw loop's work (finished messages out over one\n"
        "connection) plus what makes it exactly-once (an attempt fsync'd before each payload,\n"
        "each answer recorded); (a) also plans, renders, builds and stores every mail"
    )
    print()
    print(f"{'per mail (medians)':<38}{'wall':>10}{'our CPU':>10}{'server CPU':>12}")
    cpu_json: dict[str, Any] = {}
    for key, label in (
        ("raw", "raw smtplib loop"),
        ("tick", "(a) whole tick"),
        ("deliver", "(b) delivery phase"),
    ):
        client, served = cpu_per_mail(spans[key], n)
        print(
            f"{label:<38}{fmt_s(timings[key].median / n):>10}{fmt_s(client):>10}"
            f"{fmt_s(served) if served is not None else 'n/a':>12}"
        )
        cpu_json[key] = {
            "client_cpu_per_mail_s": round(client, 7),
            "server_cpu_per_mail_s": None if served is None else round(served, 7),
        }
    if args.server == "thread":
        print("  (the server runs in this process: 'our CPU' includes it)")
    print(f"server accepted {server.accepted:,} messages (expected {expected:,})")

    split_json: dict[str, Any] = {}
    if split is not None:
        seconds, parts = split
        fsyncs = sum(parts.calls.get(c, 0) for c in FSYNCS)
        print()
        print(f"where one whole tick's time goes (one instrumented run, {fmt_s(seconds)}):")
        head = "part (own time, less the parts inside)"
        print(f"{head:<42}{'calls':>8}{'per mail':>10}{'share':>8}")
        for category in CATEGORIES:
            sec = parts.seconds.get(category, 0.0)
            calls = parts.calls.get(category, 0)
            print(f"{category:<42}{calls:>8,}{fmt_s(sec / n):>10}{sec / seconds:>8.0%}")
            split_json[category.strip()] = {"seconds": round(sec, 6), "calls": calls}
        print(
            f"per mail: {fsyncs / n:.1f} fsyncs, {parts.calls.get(UNIT, 0) / n:.1f} journal "
            f"units; the raw loop takes {fmt_s(raw.median / n)} per mail in all"
        )
    if profile:
        print()
        print("cProfile of one whole tick, by own time:")
        print(profile)

    figures: dict[str, Any] = {
        "benchmark": "send",
        "mails": n,
        "repeat": args.repeat,
        "server": args.server,
        "filesystem": fstype,
        "fsync_probe": probe.json(),
        "message_bytes_mean": round(statistics.mean(sizes)),
        "raw_loop": raw.json(),
        "whole_tick": tick_t.json(),
        "deliver": deliver.json(),
        "raw_mails_per_s": round(rate(n, raw.median), 1),
        "tick_mails_per_s": round(rate(n, tick_t.median), 1),
        "deliver_mails_per_s": round(rate(n, deliver.median), 1),
        "tick_ratio": round(tick_ratio, 3),
        "deliver_ratio": round(deliver_ratio, 3),
        "target_ratio": TARGET_RATIO,
        "tick_ok": tick_ratio >= TARGET_RATIO,
        "deliver_ok": deliver_ratio >= TARGET_RATIO,
        "cpu": cpu_json,
        "server_accepted": server.accepted,
        "server_expected": expected,
        "split": split_json,
        "python": sys.version.split()[0],
    }
    print("RESULT " + json.dumps(figures, sort_keys=True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
