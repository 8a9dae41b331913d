"""The `mahnwerk` command: thin click commands over the core and the store."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
from collections.abc import Callable, Iterator
from datetime import date, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click
import orjson
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TaskID, TextColumn

from mahnwerk import __version__
from mahnwerk import mailbox as mailbox_events
from mahnwerk.checks import check_rules
from mahnwerk.config import ConfigInvalid, LoadedRules, load_rules
from mahnwerk.csvparse import parse_invoices
from mahnwerk.delivery import Tick, TickReport, tick_lock
from mahnwerk.importer import OPEN_ITEMS_SHARE, ImportRefused, import_events
from mahnwerk.inbound_types import LABELS
from mahnwerk.ledger import PAUSED, RESUMED, STOP_LIFTED
from mahnwerk.models import Event, invoice_to_json
from mahnwerk.outbox import (
    ADDRESS_CLEARED,
    OPEN_STATES,
    Entry,
    InvalidTransition,
    cancel,
    confirm,
    release,
)
from mahnwerk.plan_types import Plan
from mahnwerk.planning import plan_from_store
from mahnwerk.render import Renderer
from mahnwerk.replies import by_person, facts_json
from mahnwerk.resources import SHIPPED, shipped_root
from mahnwerk.sentfolder import SentFolder
from mahnwerk.settings import default_state_dir, resolve_as_of
from mahnwerk.store import StoreError, messages, open_store
from mahnwerk.store.tinydb_store import TinyDBStore

if TYPE_CHECKING:
    from mahnwerk.inbox import IngestReport

# The reply machinery (the classifier's tables, mail-parser, imapclient) and the service
# are imported by the commands that use them, inside them: at the top they would double
# the start-up of every other command.

# Files larger than this many rows get a progress bar.
PROGRESS_ROWS = 2000

# Errors on stderr, never wrapped: they name file:line:column and must stay greppable.
err = Console(stderr=True, highlight=False, soft_wrap=True)


class Ctx:
    def __init__(self, config: Path, state_dir: Path | None) -> None:
        self.config = config
        self.state_dir = state_dir or default_state_dir()

    def rules(self) -> LoadedRules:
        try:
            return load_rules(self.config)
        except ConfigInvalid as exc:
            for e in exc.errors:
                err.print(str(e), markup=False)
            raise SystemExit(1) from None

    def store(self) -> TinyDBStore:
        try:
            return open_store(self.state_dir)
        except StoreError as exc:
            err.print(f"store: {exc}", markup=False)
            raise SystemExit(1) from None


pass_ctx = click.make_pass_decorator(Ctx)


def _plan_at(ctx: Ctx, as_of: str | None) -> tuple[LoadedRules, datetime, Plan]:
    loaded = ctx.rules()
    try:
        now = resolve_as_of(as_of, loaded.rules)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    return loaded, now, plan_from_store(ctx.store(), loaded.rules, now)


def _echo_json(payload: Any) -> None:
    """UTF-8 JSON on stdout; orjson, because a plan of 100k invoices is 40 MB of it."""
    sys.stdout.buffer.write(orjson.dumps(payload) + b"\n")
    sys.stdout.flush()


@contextlib.contextmanager
def _progress(total: int) -> Iterator[tuple[Progress, TaskID]]:
    """A bar on stderr for large files; silent for small ones and when not a terminal."""
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        console=err,
        disable=total < PROGRESS_ROWS or not err.is_terminal,
        transient=True,
    ) as bar:
        yield bar, bar.add_task("reading", total=total)


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option(
    "--config",
    type=click.Path(path_type=Path, dir_okay=False),
    default=Path("rules.yaml"),
    show_default=True,
    help="The rules file.",
)
@click.option(
    "--state-dir",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Where the store lives [default: $STATE_DIRECTORY, else ./state].",
)
@click.version_option(__version__, prog_name="mahnwerk")
@click.pass_context
def main(ctx: click.Context, config: Path, state_dir: Path | None) -> None:
    """mahnwerk chases overdue invoices by email without straining customer relationships."""
    ctx.obj = Ctx(config, state_dir)


@main.command()
@click.argument("directory", type=click.Path(path_type=Path, file_okay=False))
def init(directory: Path) -> None:
    """Write a commented rules.yaml, the templates and sample invoices to start from."""
    root = shipped_root()
    targets = [(root / name, directory / name) for name in SHIPPED]
    existing = [dst for _, dst in targets if dst.exists()]
    if existing:
        err.print(
            f"not overwriting {', '.join(str(p) for p in existing)}: "
            "init writes only into a fresh folder",
            markup=False,
        )
        raise SystemExit(1)
    directory.mkdir(parents=True, exist_ok=True)
    for src, dst in targets:
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dst)
    config = directory / "rules.yaml"
    click.echo(
        f"wrote {config}, {directory / 'templates'} and {directory / 'samples'}\n"
        f"next: edit company and bank in {config}, then\n"
        f"  mahnwerk --config {config} check\n"
        f"  mahnwerk --config {config} import {directory / 'samples' / 'invoices-de.csv'}\n"
        f"  mahnwerk --config {config} plan"
    )


@main.command()
@click.option("--connect", is_flag=True, help="Also log in to the SMTP and IMAP servers.")
@pass_ctx
def check(ctx: Ctx, connect: bool) -> None:
    """Validate rules.yaml and render every referenced template with sample data."""
    loaded = ctx.rules()
    errors, rendered = check_rules(loaded)
    for e in errors:
        err.print(str(e), markup=False)
    if errors:
        err.print(f"{len(errors)} error(s) in {loaded.path}", markup=False)
        raise SystemExit(1)
    rules = loaded.rules
    stages = sum(len(p.stages) for p in rules.policies)
    policies = len(rules.policies)
    click.echo(
        f"{loaded.path}: OK ({policies} {'policy' if policies == 1 else 'policies'}, "
        f"{stages} stages, {rendered} templates rendered)"
    )
    if connect:
        from mahnwerk.connectcheck import check_connections

        results = check_connections(rules, os.environ)
        for result in results:
            click.echo(result.line())
        failed = sum(r.failed for r in results)
        if failed:
            err.print(f"{failed} connection check(s) failed", markup=False)
            raise SystemExit(1)


@main.command(name="import")
@click.argument("file", type=click.Path(path_type=Path, dir_okay=False, exists=True))
@click.option("--open-items", is_flag=True, help="The file lists all open items; others are paid.")
@click.option("--skip-bad", is_flag=True, help="Import the good rows, summarise the bad ones.")
@click.option(
    "--force",
    is_flag=True,
    help=f"With --open-items: settle even more than {OPEN_ITEMS_SHARE:.0%} of the open invoices.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@pass_ctx
def import_(
    ctx: Ctx, file: Path, open_items: bool, skip_bad: bool, force: bool, as_json: bool
) -> None:
    """Upsert invoices from a CSV file (international or German export form)."""
    loaded = ctx.rules()
    data = file.read_bytes()
    lines = data.count(b"\n")
    with _progress(lines) as (bar, task):
        bar.update(task, description="reading")
        parsed = parse_invoices(data, str(file), lambda line: bar.update(task, completed=line))
        if parsed.fatal or (parsed.errors and not skip_bad):
            bar.stop()
            for e in parsed.errors:
                err.print(str(e), markup=False)
            advice = (
                "the file cannot be read as a whole"
                if parsed.fatal
                else "fix the rows, or use --skip-bad to import the good ones"
            )
            err.print(
                f"{len(parsed.errors)} error(s): nothing imported from {file} ({advice})",
                markup=False,
            )
            raise SystemExit(1)
        if open_items and parsed.errors:
            # A skipped row would look like a settled invoice and be marked paid.
            bar.stop()
            err.print("--open-items needs a file without errors: nothing imported", markup=False)
            raise SystemExit(1)
        store = ctx.store()
        now = datetime.now(loaded.rules.company.tz)
        with store.transaction() as tx:
            existing = {inv.number: inv for inv in tx.view.invoices()}
            bar.update(task, description="comparing", completed=0, total=len(parsed.invoices))
            try:
                summary = import_events(
                    existing,
                    parsed.invoices,
                    source=file.name,
                    open_items=open_items,
                    now=now,
                    force=force,
                    progress=lambda n: bar.advance(task, n),
                )
            except ImportRefused as exc:
                bar.stop()
                err.print(f"{exc}; nothing imported", markup=False)
                raise SystemExit(1) from None
            bar.update(task, description="writing")
            tx.add_all(summary.events)
    summary.skipped = len({e.line for e in parsed.errors})
    result = {
        "file": str(file),
        "dialect": parsed.dialect,
        "new": summary.new,
        "updated": summary.updated,
        "unchanged": summary.unchanged,
        "marked_paid": summary.marked_paid,
        "skipped": summary.skipped,
    }
    if as_json:
        _echo_json(result)
    else:
        click.echo(
            f"{file}: {summary.new} new, {summary.updated} updated, {summary.unchanged} "
            f"unchanged, {summary.marked_paid} marked paid ({parsed.dialect} form)"
        )
    if summary.skipped:
        for e in parsed.errors:
            err.print(f"skipped: {e}", markup=False)
        err.print(f"{summary.skipped} bad row(s) skipped", markup=False)


@main.command()
@click.option("--as-of", "as_of", default=None, help="A date (window opening) or ISO datetime.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list, one object per mail.")
@pass_ctx
def plan(ctx: Ctx, as_of: str | None, as_json: bool) -> None:
    """Show what would be sent, and why. Sends nothing."""
    _loaded, now, result = _plan_at(ctx, as_of)
    if as_json:
        if not result.window_open:
            err.print(f"send window closed: {result.window_note}", markup=False)
        _echo_json([r.to_json() for r in result.reminders])
        return
    if not result.window_open:
        opens = result.opens_at.isoformat(timespec="minutes") if result.opens_at else "never"
        click.echo(f"send window closed: {result.window_note}; opens {opens}")
        return
    # Plain lines, not rich: a plan can list 100k invoices, and rich prints ~100 µs a line.
    lines = [f"plan for {now.isoformat(timespec='minutes')}"]
    for r in result.reminders:
        to = f"<{r.to}>" if r.action == "email" else "(hand-off to a person)"
        totals = ", ".join(f"{amt} {cur}" for cur, amt in r.totals.items())
        lines.append(f"{r.stage:<13} {r.customer_id} {r.customer_name} {to}  {totals}")
        lines.extend(f"    {item.invoice.number} {item.reason}" for item in r.items)
    lines.extend(
        f"held back: {d.customer_id} {', '.join(d.invoice_numbers)} {d.stage}: {d.reason}"
        for d in result.deferred
    )
    lines.append(f"{len(result.reminders)} planned, {len(result.deferred)} held back")
    click.echo("\n".join(lines))


@main.command()
@click.argument("customer_id")
@click.option("--as-of", "as_of", default=None, help="A date (window opening) or ISO datetime.")
@click.option("--html", is_flag=True, help="Print the HTML part instead of the text part.")
@pass_ctx
def preview(ctx: Ctx, customer_id: str, as_of: str | None, html: bool) -> None:
    """Render the mail the plan has for one customer, as the customer would get it."""
    loaded, now, result = _plan_at(ctx, as_of)
    mails = [r for r in result.reminders if r.customer_id == customer_id and r.action == "email"]
    if not mails:
        why = result.window_note or next(
            (d.reason for d in result.deferred if d.customer_id == customer_id),
            "no stage is due for this customer",
        )
        err.print(f"no mail for {customer_id} at {now.isoformat()}: {why}", markup=False)
        raise SystemExit(1)
    mail = Renderer(loaded.templates_dir, loaded.rules).render(mails[0], mails[0].planned_day)
    click.echo(f"To: {mails[0].customer_name} <{mails[0].to}>")
    click.echo(f"Subject: {mail.subject}")
    click.echo("")
    click.echo(mail.html if html else mail.text)


@main.command()
@click.argument("invoice")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list of events.")
@pass_ctx
def thread(ctx: Ctx, invoice: str, as_json: bool) -> None:
    """Show an invoice's history, oldest first."""
    store = ctx.store()
    if invoice not in store.view():
        err.print(f"no invoice {invoice!r} in {ctx.state_dir}", markup=False)
        raise SystemExit(1)
    events = store.thread(invoice)
    if as_json:
        _echo_json([e.to_json() for e in events])
        return
    click.echo(
        "\n".join(f"{e.at.isoformat(timespec='seconds')}  {e.type:<16} {e.reason}" for e in events)
    )


@main.command()
@click.option("--customer", default=None, help="Only this customer_id.")
@click.option(
    "--status", type=click.Choice(["open", "paid", "cancelled"]), default=None, help="Only this."
)
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def invoices(ctx: Ctx, customer: str | None, status: str | None, as_json: bool) -> None:
    """List the invoices in the store."""
    view = ctx.store().view()
    rows = [
        i
        for i in view.invoices()
        if (customer is None or i.customer_id == customer)
        and (status is None or i.status == status)
    ]
    rows.sort(key=lambda i: (i.customer_id, i.due_date, i.number))
    if as_json:
        payload: list[dict[str, Any]] = [
            {**invoice_to_json(i), "open_amount": str(i.open_amount)} for i in rows
        ]
        _echo_json(payload)
        return
    click.echo(
        "\n".join(
            f"{i.number:<16} {i.customer_id:<10} {i.due_date.isoformat()}  "
            f"{i.open_amount:>12} {i.currency}  {i.status:<9} {i.customer_name}"
            for i in rows
        )
    )


def _run_tick(ctx: Ctx, as_of: str | None) -> TickReport:
    loaded = ctx.rules()
    try:
        now = resolve_as_of(as_of, loaded.rules)
    except ValueError as exc:
        raise click.BadParameter(str(exc)) from None
    store = ctx.store()
    try:
        folder = SentFolder.hooks_for(loaded.rules.imap, os.environ)
        hooks = folder.tick_hooks() if folder is not None else {}
        try:
            return Tick(store, loaded, now, environ=os.environ, **hooks).run()
        finally:
            if folder is not None:
                folder.close()
    except StoreError as exc:
        err.print(f"tick: {exc}", markup=False)
        raise SystemExit(1) from None


@main.command()
@click.option("--as-of", "as_of", default=None, help="A date (window opening) or ISO datetime.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@pass_ctx
def tick(ctx: Ctx, as_of: str | None, as_json: bool) -> None:
    """Run one cycle: plan, queue, deliver over SMTP and record every step in the threads."""
    report = _run_tick(ctx, as_of)
    if as_json:
        _echo_json(report.to_json())
    else:
        lines = [f"tick at {report.now.isoformat(timespec='minutes')}"]
        if report.ingest is not None and report.ingest.lines:
            states = [m.state for m in report.ingest.lines]
            counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
            lines.append(f"replies read: {counts} (mahnwerk review lists what needs a person)")
        if not report.window_open:
            lines.append(f"send window closed: {report.window_note}; nothing delivered")
        # One line per mail, with where it ended up (--json has every step).
        last = {s.key: s for s in report.steps}
        lines.extend(
            f"{s.result:<10} {s.stage:<13} {s.customer_id} <{s.to}>  {s.detail}"
            for s in last.values()
        )
        ends = [s.result for s in last.values()]
        counts = ", ".join(f"{ends.count(r)} {r}" for r in dict.fromkeys(ends))
        lines.append(counts or "nothing to do")
        click.echo("\n".join(lines))
    for e in report.errors:
        err.print(e, markup=False)
    if report.errors:
        raise SystemExit(1)


def _entry(store: TinyDBStore, key: str) -> Entry:
    entry = store.view().entry(key)
    if entry is None:
        err.print(f"no outbox entry {key!r}", markup=False)
        raise SystemExit(1)
    return entry


def _change(
    ctx: Ctx, key: str, step: Callable[[Entry, datetime, str], list[Event]], why: str
) -> None:
    loaded = ctx.rules()
    store = ctx.store()
    _entry(store, key)
    now = datetime.now(loaded.rules.company.tz)
    try:
        with store.transaction() as tx:
            entry = tx.view.entry(key)
            assert entry is not None
            if entry.state == "sending":
                # A tick has it in hand, or was killed with it: the next tick settles it.
                raise InvalidTransition(f"{key} is being sent; run `mahnwerk tick` first")
            events = step(entry, now, why)
            tx.add_all(events)
    except InvalidTransition as exc:
        err.print(str(exc), markup=False)
        raise SystemExit(1) from None
    click.echo(f"{key}: {events[0].reason}")


@main.group(invoke_without_command=True)
@click.option("--all", "show_all", is_flag=True, help="Also the mails sent and cancelled.")
@click.option("--json", "as_json", is_flag=True, help="Print a JSON object.")
@click.pass_context
def outbox(click_ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List mails waiting, failed or of unknown fate, and the addresses refused for good."""
    if click_ctx.invoked_subcommand is not None:
        return
    ctx: Ctx = click_ctx.obj
    view = ctx.store().view()
    entries = view.entries()
    if not show_all:
        entries = [e for e in entries if e.state in OPEN_STATES]
    entries.sort(key=lambda e: (e.queued_at, e.key))
    addresses = sorted(view.addresses(), key=lambda a: a["email"].casefold())
    if as_json:
        _echo_json({"entries": [e.to_json() for e in entries], "undeliverable": addresses})
        return
    lines = []
    for e in entries:
        last = f"  {e.last['response']}" if e.last else ""
        lines.append(
            f"{e.state:<9} {e.stage:<13} {e.customer_id} <{e.to}> "
            f"{'+'.join(e.numbers)}  {e.key}{last}"
        )
    lines.extend(
        f"undeliverable <{a['email']}> since {a['at'][:10]}: {a['response']}" for a in addresses
    )
    click.echo("\n".join(lines) if lines else "outbox is empty")


@outbox.command(name="retry")
@click.argument("key")
@pass_ctx
def outbox_retry(ctx: Ctx, key: str) -> None:
    """Send a failed or unknown mail again (same Message-ID)."""
    _change(ctx, key, release, "released by a person: send again with the same Message-ID")


@outbox.command(name="confirm")
@click.argument("key")
@pass_ctx
def outbox_confirm(ctx: Ctx, key: str) -> None:
    """Record a mail of unknown fate as delivered (e.g. found in the Sent folder by hand)."""
    _change(ctx, key, confirm, "confirmed as delivered by a person")


@outbox.command(name="cancel")
@click.argument("key")
@pass_ctx
def outbox_cancel(ctx: Ctx, key: str) -> None:
    """Never send this mail; its invoices are planned afresh on the next tick."""
    _change(ctx, key, cancel, "cancelled by a person")


@outbox.command(name="show")
@click.argument("key")
@pass_ctx
def outbox_show(ctx: Ctx, key: str) -> None:
    """Print the stored message (the exact bytes sent) and the entry's events."""
    store = ctx.store()
    entry = _entry(store, key)
    for e in store.outbox_thread(key):
        click.echo(f"{e.at.isoformat(timespec='seconds')}  {e.type:<18} {e.reason}")
    click.echo("")
    try:
        data = messages.get(store.dir, entry.eml)
    except StoreError as exc:
        err.print(str(exc), markup=False)
        raise SystemExit(1) from None
    sys.stdout.buffer.write(data)
    sys.stdout.flush()


@outbox.command(name="unblock")
@click.argument("email")
@pass_ctx
def outbox_unblock(ctx: Ctx, email: str) -> None:
    """Allow mail to an address the server refused, once it is known to work again."""
    loaded = ctx.rules()
    store = ctx.store()
    now = datetime.now(loaded.rules.company.tz)
    with store.transaction() as tx:
        if email.casefold() not in tx.view.undeliverable():
            err.print(f"{email} is not marked undeliverable", markup=False)
            raise SystemExit(1)
        tx.add(Event("", ADDRESS_CLEARED, now, f"{email} cleared by a person", {"email": email}))
        # The refused mails would keep their invoices waiting: the next tick plans afresh.
        refused = [
            e
            for e in tx.view.entries()
            if e.state == "failed" and e.kind == "reminder" and e.to.casefold() == email.casefold()
        ]
        for entry in refused:
            tx.add_all(cancel(entry, now, f"{email} cleared by a person: planned afresh"))
    also = f" ({len(refused)} refused mail(s) cancelled)" if refused else ""
    click.echo(f"{email}: mail may go there again from the next tick{also}")


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())


# -- replies ------------------------------------------------------------------------------


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option("--watch", is_flag=True, help="Keep reading as replies arrive (IDLE) until stopped.")
@pass_ctx
def ingest(ctx: Ctx, as_json: bool, watch: bool) -> None:
    """Read the reply folder once: match, classify and act on each new reply."""
    from mahnwerk.imap import ImapError
    from mahnwerk.inbox import Ingest

    loaded = ctx.rules()
    if loaded.rules.imap is None:
        err.print("rules.yaml has no imap: section: there is no mailbox to read", markup=False)
        raise SystemExit(1)
    store = ctx.store()
    if watch:
        _watch(store, loaded, as_json)
        return
    now = datetime.now(loaded.rules.company.tz)
    try:
        with tick_lock(store.dir):
            report = Ingest(store, loaded, now, os.environ).run()
    except (ImapError, StoreError) as exc:
        err.print(f"ingest: {exc}", markup=False)
        raise SystemExit(1) from None
    if as_json:
        _echo_json(report.to_json())
    else:
        lines = [
            f"{m.state:<10} {m.label or '-':<10} {m.confidence:>4.2f}  {m.sender}  "
            f"{'+'.join(m.invoices) or '-'}  {m.reason}"
            for m in report.lines
        ]
        states = [m.state for m in report.lines]
        counts = ", ".join(f"{states.count(s)} {s}" for s in dict.fromkeys(states))
        lines.append(counts or f"no new mail in {report.folder}")
        click.echo("\n".join(lines))
    for e in report.errors:
        err.print(e, markup=False)
    if report.errors:
        raise SystemExit(1)


class _Stop(Exception):
    pass


def _watch(store: TinyDBStore, loaded: LoadedRules, as_json: bool) -> None:
    """`ingest --watch`: one line per reply as it is read; SIGTERM or Ctrl-C ends it
    between passes, or at once while it waits."""
    from mahnwerk.watch import RENEW_SECONDS, ReplyWatcher

    tz = loaded.rules.company.tz

    def show(report: IngestReport) -> None:
        for m in report.lines:
            if as_json:
                click.echo(orjson.dumps(m.to_json()).decode())
            else:
                click.echo(f"{m.state:<10} {m.label or '-':<10} {m.sender}  {m.reason}")

    watcher = ReplyWatcher(
        store, lambda: loaded, os.environ, now=lambda: datetime.now(tz), on_report=show
    )
    stopping = False

    def on_signal(signum: int, frame: object) -> None:
        nonlocal stopping
        stopping = True
        if watcher.waiting:
            raise _Stop

    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, on_signal)
    try:
        while not stopping:
            watcher.step(RENEW_SECONDS)
    except _Stop:
        pass
    finally:
        watcher.close()


@main.command(name="classify")
@click.argument("files", nargs=-1, required=True, type=click.Path(path_type=Path, dir_okay=False))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line and file.")
def classify_(files: tuple[Path, ...], as_json: bool) -> None:
    """Classify .eml files and print the result; stores nothing."""
    from mahnwerk.classify import classify
    from mahnwerk.inbound import parse

    failed = False
    for path in files:
        try:
            raw = path.read_bytes()
        except OSError as exc:
            err.print(f"{path}: {exc.strerror or exc}", markup=False)
            failed = True
            continue
        mail = parse(raw)
        result = classify(mail)
        facts = facts_json(result.facts)
        row = {
            "file": str(path),
            "label": result.label,
            "confidence": round(result.confidence, 3),
            "promised_date": facts["promised_date"],
            "paid_date": facts["paid_date"],
            "amount": facts["amount"],
            "invoice_refs": facts["invoice_refs"],
            "reasons": list(result.reasons),
        }
        if as_json:
            click.echo(orjson.dumps(row).decode())
        else:
            extra = ", ".join(
                f"{k} {row[k]}" for k in ("promised_date", "paid_date", "amount") if row[k]
            )
            click.echo(
                f"{path}: {result.label} ({result.confidence:.2f}){', ' + extra if extra else ''}"
                f"  {'; '.join(result.reasons)}"
            )
    if failed:
        raise SystemExit(1)


@main.command()
@click.option("--json", "as_json", is_flag=True, help="Print a JSON list.")
@pass_ctx
def review(ctx: Ctx, as_json: bool) -> None:
    """List the replies that need a person, oldest first."""
    queue = ctx.store().view().review_queue()
    if as_json:
        _echo_json(
            [
                {k: v for k, v in r.items() if k not in ("thread", "text")}
                | {"text": r.get("text")}
                for r in queue
            ]
        )
        return
    lines = [
        f"{r['at'][:16]}  {r.get('label', '-'):<10} {r.get('confidence', 0):>4.2f}  "
        f"{r.get('from', '')}  {'+'.join(r.get('invoices') or []) or '-'}  {r.get('reason', '')}"
        for r in queue
    ]
    click.echo("\n".join(lines) if lines else "nothing to review")


@main.command()
@click.argument("invoice")
@click.option("--as", "label", required=True, type=click.Choice(list(LABELS)))
@click.option("--date", "when", default=None, help="The promised date (YYYY-MM-DD).")
@click.option("--note", default="", help="Why, for the thread.")
@pass_ctx
def resolve(ctx: Ctx, invoice: str, label: str, when: str | None, note: str) -> None:
    """Settle a reply about INVOICE as LABEL: acted on as if classified so, and its mails
    leave the review queue."""
    loaded = ctx.rules()
    store = ctx.store()
    promised = _day(when, "--date")
    now = datetime.now(loaded.rules.company.tz)
    with store.transaction() as tx:
        view = tx.view
        if invoice not in view:
            err.print(f"no invoice {invoice!r} in {ctx.state_dir}", markup=False)
            raise SystemExit(1)
        events = by_person(
            invoice,
            label,  # type: ignore[arg-type]
            promised=promised,
            note=note,
            rules=loaded.rules.replies,
            now=now,
            today=now.date(),
        )
        for r in view.review_queue():
            if invoice in (r.get("invoices") or []):
                events.append(
                    mailbox_events.resolved(r["key"], now, f"resolved by a person as {label}")
                )
        tx.add_all(events)
    for e in events:
        click.echo(f"{e.type:<16} {e.reason}")


@main.command()
@click.argument("invoice")
@click.option("--reason", required=True, help="Why, for the thread.")
@click.option("--until", default=None, help="The last paused day (YYYY-MM-DD); open-ended without.")
@pass_ctx
def pause(ctx: Ctx, invoice: str, reason: str, until: str | None) -> None:
    """Send no reminder for INVOICE until the given day (or until `resume`)."""
    day = _day(until, "--until")
    _person_event(
        ctx,
        invoice,
        lambda now: [
            Event(
                invoice,
                PAUSED,
                now,
                f"paused by a person: {reason}",
                {"until": day.isoformat() if day else None},
            )
        ],
    )


@main.command()
@click.argument("invoice")
@pass_ctx
def resume(ctx: Ctx, invoice: str) -> None:
    """Lift a pause or a Mahnstopp on INVOICE: reminders are planned again."""

    def lift(now: datetime) -> list[Event]:
        return [
            Event(invoice, RESUMED, now, "resumed by a person", {}),
            Event(invoice, STOP_LIFTED, now, "Mahnstopp lifted by a person", {}),
        ]

    _person_event(ctx, invoice, lift)


def _day(text: str | None, option: str) -> date | None:
    if text is None:
        return None
    try:
        return date.fromisoformat(text)
    except ValueError:
        raise click.BadParameter(
            f"{text!r} is not a date like 2026-12-15", param_hint=option
        ) from None


def _person_event(ctx: Ctx, invoice: str, make: Callable[[datetime], list[Event]]) -> None:
    loaded = ctx.rules()
    store = ctx.store()
    now = datetime.now(loaded.rules.company.tz)
    with store.transaction() as tx:
        if invoice not in tx.view:
            err.print(f"no invoice {invoice!r} in {ctx.state_dir}", markup=False)
            raise SystemExit(1)
        events = make(now)
        tx.add_all(events)
    for e in events:
        click.echo(f"{invoice}: {e.reason}")


@main.command()
@click.pass_context
def run(click_ctx: click.Context) -> None:
    """Run as a service: tick on schedule, read replies as they arrive (systemd Type=notify)."""
    from mahnwerk.service import run_service

    ctx: Ctx = click_ctx.obj
    ctx.rules()  # errors with file:line:column before anything starts
    store = ctx.store()
    try:
        code = run_service(ctx.config, store, os.environ)
    except ConfigInvalid as exc:
        for e in exc.errors:
            err.print(str(e), markup=False)
        raise SystemExit(1) from None
    finally:
        store.close()
    raise SystemExit(code)


@main.command()
@click.option(
    "--dir",
    "directory",
    type=click.Path(path_type=Path, file_okay=False),
    default=None,
    help="Build the workspace here (a new or empty folder) [default: a new temporary folder].",
)
@click.option(
    "--weeks",
    type=click.IntRange(1, 26),
    default=8,
    show_default=True,
    help="Simulated weeks from 2026-11-25.",
)
@click.option(
    "--thread",
    "invoice",
    default="RE-2026-0431",
    show_default=True,
    help="The invoice whose whole thread is printed at the end.",
)
def demo(directory: Path | None, weeks: int, invoice: str) -> None:
    """Eight simulated weeks in seconds, on built-in defaults and no external server:
    reminders go to an SMTP server on loopback, scripted customers' replies are read from
    a local Maildir. Ignores --config and --state-dir: it builds its own workspace."""
    from mahnwerk.demo import run as run_demo  # aiosmtpd is loaded only for the demo

    try:
        code = run_demo(directory, weeks=weeks, thread=invoice)
    except FileExistsError as exc:
        err.print(str(exc), markup=False)
        raise SystemExit(1) from None
    raise SystemExit(code)
