"""The `intake` command as an operator and a scripted user run it (real subprocesses)."""

from __future__ import annotations

import os
import queue
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.harness import TEST_CONFIG, write_config

ROOT = Path(__file__).resolve().parents[2]
INTAKE = [sys.executable, "-m", "bot"]
FAST = TEST_CONFIG.replace('wait = "2m"', 'wait = "2s"')


def run(args: list[str], stdin: str = "", timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run ``intake ARGS`` to completion."""
    return subprocess.run(
        [*INTAKE, *args],
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


class Shell:
    """An `intake shell` process driven line by line through pipes."""

    def __init__(self, config: Path, *extra: str) -> None:
        self.proc = subprocess.Popen(
            [*INTAKE, "shell", "-c", str(config), *extra],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            cwd=ROOT,
            bufsize=1,
        )
        self.lines: queue.Queue[str] = queue.Queue()
        self.seen: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line.rstrip("\n"))

    def send(self, line: str) -> None:
        """Type one line."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(line + "\n")
        self.proc.stdin.flush()

    def wait_for(self, pattern: str, within: float) -> re.Match[str]:
        """Read output lines until one matches ``pattern``; fail after ``within`` seconds."""
        deadline = time.monotonic() + within
        while (left := deadline - time.monotonic()) > 0:
            try:
                line = self.lines.get(timeout=left)
            except queue.Empty:
                break
            self.seen.append(line)
            if match := re.search(pattern, line):
                return match
        raise AssertionError(f"no line matching {pattern!r} within {within}s; saw {self.seen}")

    def finish(self, timeout: float = 30) -> tuple[str, str]:
        """Close stdin, wait for the exit; return the output not yet read, and stderr."""
        assert self.proc.stdin is not None and self.proc.stderr is not None
        self.proc.stdin.close()
        self.proc.wait(timeout=timeout)
        self._reader.join(timeout=5)
        err = self.proc.stderr.read()
        self.proc.stderr.close()
        assert self.proc.stdout is not None
        self.proc.stdout.close()
        assert self.proc.returncode == 0, err
        rest = []
        while not self.lines.empty():
            rest.append(self.lines.get())
        return "\n".join(rest), err


@pytest.mark.slow
def test_scripted_shell_sos_page_ack_and_silence(tmp_path: Path) -> None:
    """SOS → '[to alice] CRITICAL case REF' within a second → '@alice ack REF' → the defender
    is told → no further page even after bob's step would have come."""
    shell = Shell(write_config(tmp_path, FAST), "--linger", "4")
    shell.send("SOS")
    ref = shell.wait_for(r"^\[to alice\] CRITICAL case ([A-Z0-9]{4})$", within=15).group(1)
    started = time.monotonic()
    shell.send(f"@alice ack {ref}")
    shell.wait_for(rf"^\[to defender\] A responder has your case {ref}", within=5)
    assert time.monotonic() - started < 5
    out, err = shell.finish()
    assert "[to bob]" not in out
    assert "DEVELOPMENT keys" in err


@pytest.mark.slow
def test_the_page_arrives_within_a_second_of_sos(tmp_path: Path) -> None:
    """Once the shell runs, the first page follows SOS in under a second."""
    shell = Shell(write_config(tmp_path, FAST))
    shell.send("/help")  # wait until the shell is up and answering
    shell.wait_for(r"^\[to defender\] Send SOS at any time", within=20)
    started = time.monotonic()
    shell.send("SOS")
    shell.wait_for(r"^\[to alice\] CRITICAL case [A-Z0-9]{4}$", within=5)
    assert time.monotonic() - started < 1.0
    shell.finish()


@pytest.mark.slow
def test_next_step_is_paged_after_a_restart(tmp_path: Path) -> None:
    """SOS, the shell exits, the wait runs out while it is down; the next start pages bob
    once, and a further start pages nobody."""
    config = write_config(tmp_path, FAST)
    first = run(["shell", "-c", str(config)], stdin="SOS\n")
    assert first.returncode == 0, first.stderr
    ref = re.search(r"\[to alice\] CRITICAL case ([A-Z0-9]{4})", first.stdout)
    assert ref, first.stdout
    time.sleep(2.5)
    second = run(["shell", "-c", str(config)])
    assert second.stdout.count(f"[to bob] CRITICAL case {ref.group(1)}") == 1, second.stdout
    assert "[to alice]" not in second.stdout
    third = run(["shell", "-c", str(config)])
    assert "[to bob]" not in third.stdout


@pytest.mark.slow
def test_linger_lets_timers_fire_after_end_of_input(tmp_path: Path) -> None:
    """With --linger, the next step fires while the shell waits after the script ends."""
    result = run(["shell", "-c", str(write_config(tmp_path, FAST)), "--linger", "3.5"], "SOS\n")
    assert result.returncode == 0, result.stderr
    assert re.search(r"^\[to bob\] CRITICAL case [A-Z0-9]{4}$", result.stdout, re.M)


def test_unknown_speaker_is_named_and_nothing_is_sent(tmp_path: Path) -> None:
    """'@zed hi' in the shell explains who can speak; nothing is sent for it."""
    result = run(["shell", "-c", str(write_config(tmp_path))], "@zed hi\n")
    assert result.returncode == 0, result.stderr
    assert result.stdout == (
        "[shell] nobody called @zed is configured for the console "
        "(responders here: @alice, @bob, @carol); the line was not sent\n"
    )


def test_help_explains_every_subcommand_and_option() -> None:
    """`intake --help` lists every subcommand; `intake shell --help` explains --linger and -c."""
    top = run(["--help"])
    for word in ("shell", "run", "db", "keys", "flows"):
        assert re.search(rf"^\s+{word}\s+\S", top.stdout, re.M), top.stdout
    shell = run(["shell", "--help"])
    assert "--linger SECONDS" in shell.stdout and "-c, --config" in shell.stdout
    assert "@NAME" in shell.stdout


def test_flows_check_passes_on_the_shipped_flows() -> None:
    """`intake flows check` validates the shipped flows, triage rules and all eight
    languages' translations and lengths."""
    result = run(["flows", "check"])
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("ok: 11 flows (attack, danger_now, detention, digital, ")
    assert result.stdout.rstrip().endswith("languages: en, es, fr, ar, ru, fa, pt, tr")


def test_flows_graph_prints_mermaid_and_names_unknown_flows() -> None:
    """`intake flows graph detention` prints a Mermaid flowchart with the page-first branch;
    an unknown flow is one sentence listing the real ones."""
    result = run(["flows", "graph", "detention"])
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0] == "flowchart TD"
    assert "    s_when -->|when = now/day/skipped| s_alerting" in lines
    assert any(line.startswith('    s_alerting[["alerting (open)') for line in lines)
    wrong = run(["flows", "graph", "nope"])
    assert wrong.returncode == 1
    assert "there is no flow 'nope'; flows: attack, danger_now" in wrong.stderr
    assert "Traceback" not in wrong.stderr


def test_run_refuses_the_example_and_development_keys(tmp_path: Path) -> None:
    """`intake run` on the shipped example names every example value it refuses."""
    result = run(["run", "-c", str(ROOT / "config.example.toml")])
    assert result.returncode == 1
    assert "responders[0].signal: still the example value" in result.stderr
    assert "no channel is enabled" in result.stderr


def test_a_config_naming_an_unknown_responder_fails_with_file_line_and_key(
    tmp_path: Path,
) -> None:
    """A policy naming an unknown responder stops the start with file:line: key."""
    config = write_config(
        tmp_path,
        TEST_CONFIG.replace('notify = ["bob"], wait = "3m"', 'notify = ["zed"], wait = "3m"'),
    )
    result = run(["shell", "-c", str(config)], "SOS\n")
    assert result.returncode == 1
    line = next(n for n, text in enumerate(config.read_text().splitlines(), 1) if "zed" in text)
    assert f"config.toml:{line}: paging.critical.steps[1].notify: unknown responder 'zed'" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


def test_db_upgrade_creates_and_then_reports_current(tmp_path: Path) -> None:
    """`intake db upgrade` creates the database, then says it is already current."""
    config = str(write_config(tmp_path))
    first = run(["db", "upgrade", "-c", config])
    assert first.returncode == 0 and "upgraded from empty" in first.stdout
    second = run(["db", "upgrade", "-c", config])
    assert "already at revision" in second.stdout


def test_keys_init_makes_private_production_keys(tmp_path: Path) -> None:
    """`intake keys init` writes a 0600 key file and refuses to overwrite it."""
    first = run(["keys", "init", "--dir", str(tmp_path / "k")])
    assert first.returncode == 0, first.stderr
    assert (tmp_path / "k" / "keyring.json").stat().st_mode & 0o777 == 0o600
    second = run(["keys", "init", "--dir", str(tmp_path / "k")])
    assert second.returncode == 1 and "Traceback" not in second.stderr


def test_oncall_prints_each_rota_and_the_next_handoffs() -> None:
    """`intake oncall --at` on the example shows the Christmas override and each tier's first
    page; a malformed time is refused with a clear message."""
    result = run(["oncall", "--at", "2026-12-25 12:00"])
    assert result.returncode == 0, result.stderr
    assert "primary: carol" in result.stdout  # carol covers alice over Christmas
    assert "critical: carol" in result.stdout
    bad = run(["oncall", "--at", "tomorrow-ish"])
    assert bad.returncode == 2 and "is not a time like" in bad.stderr


@pytest.mark.sqlite_only
def test_an_unreadable_database_gives_a_sentence_not_a_traceback(tmp_path: Path) -> None:
    """If the database file is not a database, the shell says what happened in one sentence."""
    (tmp_path / "intake.db").write_bytes(b"this is not a database" * 100)
    result = run(["shell", "-c", str(write_config(tmp_path))], "hello\n")
    assert result.returncode == 1
    assert "Traceback" not in result.stderr
    assert "unexpected error (DatabaseError)" in result.stderr
