"""The ``intake`` command line (click: well-kept, composable subcommands, generated help)."""

from __future__ import annotations

import asyncio
import logging
import os
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click

from bot.app import PROJECT_ROOT, flows_dir, load_flow_data
from bot.config import Config, ConfigError, load_config
from bot.conversation.checks import check_lengths, check_translations, extract
from bot.conversation.graph import mermaid
from bot.conversation.loader import FlowError
from bot.errors import IntakeError
from bot.observability import setup_logging
from db.base import DatabaseInUse
from db.crypto import CryptoError, create_keyring, load_keyring, rotate_kek

EXAMPLE_CONFIG = PROJECT_ROOT / "config.example.toml"

config_option = click.option(
    "-c",
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    help="The TOML config file (see config.example.toml).",
)


def _load(path: Path | None, *, default_example: bool) -> Config:
    if path is None:
        if not default_example:
            raise click.UsageError("give the config file with -c FILE")
        path = EXAMPLE_CONFIG
    try:
        return load_config(path)
    except ConfigError as exc:
        raise click.ClickException(f"invalid configuration:\n{exc}") from None


def _run(coroutine: Any) -> Any:
    try:
        return asyncio.run(coroutine)
    except (FlowError, CryptoError, DatabaseInUse) as exc:
        raise click.ClickException(str(exc)) from None
    except (KeyboardInterrupt, click.ClickException, IntakeError):
        raise
    except Exception as exc:
        # Never a traceback on the terminal (it could quote data): the log gets the type and
        # the frames through the redaction filter; the operator gets a clear sentence.
        logging.getLogger("bot.cli").exception("cli.failed")
        raise click.ClickException(
            f"unexpected error ({type(exc).__name__}); everything already received is stored "
            "and will be processed at the next start. The log above names where it happened."
        ) from None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def main() -> None:
    """defender-intake: secure emergency intake and on-call paging for human rights defenders.

    A defender writes (or sends SOS); the bot asks a few questions, stores the answers
    encrypted, decides how urgent it is, and pages on-call responders until one takes the case.
    Start with `intake shell` to try everything on your own terminal.
    """


@main.command()
@config_option
@click.option(
    "--linger",
    type=click.FloatRange(min=0),
    default=0.0,
    show_default=True,
    metavar="SECONDS",
    help="After the end of input, keep running this long so escalation timers can fire.",
)
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="WARNING",
    show_default=True,
    help="Log level on stderr (logs carry event names and ids only).",
)
def shell(config_path: Path | None, linger: float, log_level: str) -> None:
    """Chat with the bot on this terminal — no token, no account, no network.

    Uses config.example.toml unless -c is given: a SQLite file and development keys under
    intake-data/, both created on first start. Each line you type is said by the defender;
    a line starting with @NAME is said by responder NAME (e.g. `@alice ack K7Q2`). Every
    output line shows whom it is for, e.g. `[to alice] CRITICAL case K7Q2`.

    Reads a script from stdin too: lines are handled in order, output is flushed as it is
    produced, and at end of input the shell exits once nothing is left to send.
    """
    from bot.shell import run_shell

    config = _load(config_path, default_example=True)
    setup_logging(log_level.upper())
    try:
        sys.exit(_run(run_shell(config, linger=linger)))
    except KeyboardInterrupt:
        click.echo("\nstopped; everything received so far is stored and will be sent", err=True)
        sys.exit(130)


@main.command()
@config_option
@click.option(
    "--log-level",
    type=click.Choice(["DEBUG", "INFO", "WARNING", "ERROR"], case_sensitive=False),
    default="INFO",
    show_default=True,
    help="Log level on stderr (logs carry event names and ids only).",
)
def run(config_path: Path | None, log_level: str) -> None:
    """Run every enabled channel, the escalation engine and the outbox sender.

    Stops cleanly on SIGINT or SIGTERM. Refuses the example's placeholder values and
    development keys: real cases need real keys (`intake keys init`) and real addresses.
    """
    from bot.run import run_service, startup_problems

    config = _load(config_path, default_example=False)
    problems = startup_problems(config, os.environ)
    if problems:
        raise click.ClickException("cannot start:\n" + "\n".join(problems))
    setup_logging(log_level.upper())
    try:
        sys.exit(_run(run_service(config)))
    except IntakeError as exc:
        raise click.ClickException(str(exc)) from None


@main.group()
def db() -> None:
    """Database maintenance."""


@db.command("upgrade")
@config_option
def db_upgrade(config_path: Path | None) -> None:
    """Create the database or apply every missing migration (safe to run any time)."""
    from db import migrate
    from db.base import create_engine

    config = _load(config_path, default_example=True)

    async def upgrade() -> tuple[str | None, str]:
        engine = create_engine(config.database.url)
        try:
            return await migrate.upgrade(engine)
        finally:
            await engine.dispose()

    before, after = _run(upgrade())
    if before == after:
        click.echo(f"database already at revision {after}")
    else:
        click.echo(f"database upgraded from {before or 'empty'} to revision {after}")


key_dir_option = click.option(
    "--dir",
    "directory",
    type=click.Path(file_okay=False, path_type=Path),
    help="Key directory (default: [keys] dir of the config).",
)


@main.group()
def keys() -> None:
    """Key management: the server key that wraps every data key, and the identity pepper."""


def _key_dir(config_path: Path | None, directory: Path | None) -> Path:
    if directory is not None:
        return directory
    return _load(config_path, default_example=False).keys.dir


@keys.command("init")
@config_option
@key_dir_option
def keys_init(config_path: Path | None, directory: Path | None) -> None:
    """Create production keys (mode 0600). Back the file up offline: without it, every
    stored case is unreadable."""
    key_dir = _key_dir(config_path, directory)
    try:
        keyring = create_keyring(key_dir, development=False)
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(
        f"created keys in {key_dir} (key id {keyring.current_kid}); back this file up offline"
    )


@keys.command("rotate")
@config_option
@key_dir_option
def keys_rotate(config_path: Path | None, directory: Path | None) -> None:
    """Add a new server key and make it current; old keys stay so old data still opens."""
    key_dir = _key_dir(config_path, directory)
    try:
        keyring = rotate_kek(key_dir)
    except CryptoError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"new current key id {keyring.current_kid} in {key_dir}")


def format_case_log(ref: str, events: list[tuple[datetime, str, str, str | None]]) -> list[str]:
    """Render a case log: one line per event (UTC time, actor, event, detail), no content."""
    lines = [f"case {ref}: {len(events)} events"]
    for at, event, actor, detail in events:
        lines.append(f"{at:%Y-%m-%d %H:%M:%S} {actor:<12} {event:<28} {detail or ''}".rstrip())
    return lines


@main.command()
@config_option
@click.option(
    "--at",
    "at",
    metavar="TIME",
    help='An instant such as "2026-12-24 18:00" (UTC) or with an offset '
    '("2026-12-24T18:00+01:00"); default: now.',
)
def oncall(config_path: Path | None, at: str | None) -> None:
    """Print who is on call on each rota now (or at TIME), the next hand-offs, and whom each
    tier's first step pages."""
    from bot.paging.oncall import report

    config = _load(config_path, default_example=True)
    moment = datetime.now(UTC)
    if at:
        try:
            moment = datetime.fromisoformat(at)
        except ValueError:
            raise click.BadParameter(
                f"{at!r} is not a time like 2026-12-24 18:00", param_hint="--at"
            ) from None
        moment = moment if moment.tzinfo else moment.replace(tzinfo=UTC)
    click.echo(report(config, moment))


@main.group()
def cases() -> None:
    """Case tools for operators (no defender content is ever printed)."""


@cases.command("log")
@config_option
@click.argument("ref")
def cases_log(config_path: Path | None, ref: str) -> None:
    """Print the typed log of case REF: created, paged, escalated, taken, relayed, re-tiered,
    resolved — who and when, never what the defender said."""
    from bot.core.refs import normalise_reference
    from db.base import create_engine
    from db.store import Store

    config = _load(config_path, default_example=True)
    canonical = normalise_reference(ref)
    if canonical is None:
        raise click.ClickException(f"{ref[:12]!r} is not a case reference (like K7Q2)")

    async def read() -> list[str] | None:
        engine = create_engine(config.database.url)
        try:
            keyring = load_keyring(config.keys.dir, os.environ)
            async with Store(engine, keyring).transaction() as tx:
                case = await tx.case_by_ref(canonical)
                if case is None:
                    return None
                return format_case_log(canonical, await tx.events_of(case.id))
        finally:
            await engine.dispose()

    lines = _run(read())
    if lines is None:
        raise click.ClickException(f"there is no case {canonical}")
    click.echo("\n".join(lines))


@main.group()
def flows() -> None:
    """Flow definitions (flows/*.toml)."""


@flows.command("check")
@config_option
def flows_check(config_path: Path | None) -> None:
    """Validate every flow, the shared texts, the triage rules and every offered language's
    translations and text lengths; list every problem with file, step and language."""
    config = _load(config_path, default_example=True)
    where = flows_dir(config)
    try:
        loaded, rules = load_flow_data(config)
    except FlowError as exc:
        raise click.ClickException(f"{len(exc.problems)} problem(s) in {where}:\n{exc}") from None
    languages = config.languages.offered
    problems = check_translations(loaded, where, languages) + check_lengths(loaded, languages)
    if problems:
        text = "\n".join(problems)
        raise click.ClickException(f"{len(problems)} problem(s) in {where}:\n{text}")
    names = ", ".join(sorted(loaded.flows))
    click.echo(
        f"ok: {len(loaded.flows)} flows ({names}) and {len(rules.rules)} triage rules in "
        f"{where}; languages: {', '.join(languages)}"
    )


@flows.command("graph")
@click.argument("flow_id")
@config_option
def flows_graph(flow_id: str, config_path: Path | None) -> None:
    """Print a Mermaid diagram of flow FLOW_ID (paste it into any Mermaid viewer)."""
    config = _load(config_path, default_example=True)
    try:
        loaded, _ = load_flow_data(config)
    except FlowError as exc:
        raise click.ClickException(f"the flows do not load:\n{exc}") from None
    flow = loaded.flows.get(flow_id)
    if flow is None:
        raise click.ClickException(
            f"there is no flow {flow_id!r}; flows: {', '.join(sorted(loaded.flows))}"
        )
    click.echo(mermaid(loaded, flow))


@flows.command("extract")
@config_option
def flows_extract(config_path: Path | None) -> None:
    """Write the translation template (locale/intake.pot) from the English texts."""
    config = _load(config_path, default_example=True)
    try:
        loaded, _ = load_flow_data(config)
    except FlowError as exc:
        raise click.ClickException(f"the flows do not load:\n{exc}") from None
    click.echo(f"wrote {extract(loaded, flows_dir(config))}")
