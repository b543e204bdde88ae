"""Every ``ccpipe`` example in the README runs as written, or is listed here with the reason it is not.

Convention (README.md):

* ``<!-- run -->`` on the line before a fenced block: the block runs as written, in README order,
  with bash (``set -euo pipefail``; a ```python block with the virtualenv's Python), from a folder
  laid out as ``make demo`` leaves the repository: ``out/fixtures/`` (the corpus, generated here
  smaller: ``FIXTURES``), ``out/`` (written by the README's own batch example), ``$CCPIPE_HOME``
  in the temporary folder, and the files the README tells the reader to provide (``GIVEN``).
  ``ccpipe`` on the PATH is a shim that logs every call, so a block that skips one of its commands
  fails too.
* ``<!-- synopsis -->``: a syntax summary with placeholders, not run; each command's flags are
  checked against its ``--help``.
* Any other ``ccpipe`` command in a code block must be in ``NOT_RUN`` with its reason; it is checked
  against its ``--help`` (the command exists and knows every flag the example spells, Beam's own
  flags included for batch and stream).
* ``ccpipe ...`` spans in prose are mentions: checked against ``--help`` in the same way.

The three parts are separate tests, so a command that does not exist yet shows which examples it
breaks without hiding the others.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import stat
import subprocess
import sys
from dataclasses import dataclass
from functools import cache
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"
BIN = Path(sys.executable).parent
CCPIPE = BIN / "ccpipe"

# The corpus the run blocks start from: the README's own `ccpipe fixtures` example, smaller.
FIXTURES = ["fixtures", "--out", "out/fixtures", "--seed", "7", "--tenants", "8", "--calls", "10",
            "--chats", "10", "--telemetry", "10", "--registrations", "10"]
PASSPHRASE = "correct horse battery staple"

# Every ccpipe command of the README that is not run, by its first line, with the reason.
NOT_RUN: dict[str, str] = {
    "ccpipe fixtures --out out/fixtures --seed 7":
        "the demo corpus at full size is slow to process; the test runs the same command with small sizes (FIXTURES)",
    "ccpipe batch --input '/shared/in/*.jsonl' --tenants tenants.yaml --output /shared/out \\":
        "needs a dask.distributed cluster and shared paths; tests/test_dask.py runs the DaskRunner on a local cluster",
    "ccpipe keys init --kms 'openbao://bao.internal:8200/transit?token_file=/etc/ccpipe/bao-token'":
        "needs an OpenBao server; tests/test_kms.py runs one on loopback",
    "ccpipe fixtures --out out/fixtures --to_kafka kafka://127.0.0.1:19092/contact-center --rate 200":
        "needs a Kafka broker; tests/test_streaming.py starts one",
    "ccpipe stream --source 'kafka://127.0.0.1:19092/contact-center?group=ccpipe' \\":
        "needs a Kafka broker and Prism, and runs until stopped; tests/test_streaming.py",
    "ccpipe stream --source watch:///srv/landing --tenants out/fixtures/tenants.yaml --output out-stream":
        "runs until stopped and needs Prism; tests/test_streaming.py runs a watched folder",
    "ccpipe eval-pii --labelled tests/data/dev/pe_en.jsonl --labelled tests/data/dev/pe_multi.jsonl":
        "NER over the development sets takes minutes; tests/test_pii_generalization.py holds their floors",
    "ccpipe eval-pii --input 'out/fixtures/input/*' --truth out/fixtures/truth.jsonl":
        "NER over the whole corpus takes minutes; tests/test_eval_pii.py runs the command",
    "ccpipe eval-pii --marked tests/data/conversations.jsonl      # 53 hand-written conversations, 8 English variants":
        "NER over 53 conversations takes minutes on a loaded machine; tests/test_eval_pii.py runs the command",
}


@dataclass(frozen=True)
class Block:
    """A fenced code block of the README."""

    line: int  # 1-based line of the opening fence
    lang: str
    marker: str  # "run", "synopsis" or ""
    text: str

    def commands(self) -> list[str]:
        """The ccpipe commands in the block, continuation lines joined (the first line kept as the key)."""
        out: list[str] = []
        lines = self.text.splitlines()
        i = 0
        while i < len(lines):
            line = lines[i].strip()
            if re.search(r"(^|[$(]|\s)ccpipe [a-z]", line) and not line.startswith("#"):
                full = line
                while full.rstrip().endswith("\\") and i + 1 < len(lines):
                    i += 1
                    full = full.rstrip()[:-1] + " " + lines[i].strip()
                if self.marker == "synopsis":
                    while i + 1 < len(lines) and lines[i + 1].startswith(" ") and "ccpipe " not in lines[i + 1]:
                        i += 1
                        full += " " + lines[i].strip()
                out.append(full)
            i += 1
        return out

    def first_lines(self) -> list[str]:
        """The first line of each ccpipe command (the key of NOT_RUN)."""
        return [line.strip() for line in self.text.splitlines()
                if line.strip().startswith("ccpipe ") or line.strip().startswith("$ ccpipe ")]


def readme_blocks() -> list[Block]:
    """Every fenced block of the README, with the marker on the line before it (blank lines skipped)."""
    lines = README.read_text(encoding="utf-8").splitlines()
    blocks, i = [], 0
    while i < len(lines):
        m = re.match(r"^```(\w*)\s*$", lines[i])
        if not m:
            i += 1
            continue
        j = i + 1
        while j < len(lines) and not lines[j].startswith("```"):
            j += 1
        k = i - 1
        while k >= 0 and not lines[k].strip():
            k -= 1
        marker = re.fullmatch(r"<!--\s*(run|synopsis)\s*-->", lines[k].strip()) if k >= 0 else None
        blocks.append(Block(i + 1, m.group(1), marker.group(1) if marker else "", "\n".join(lines[i + 1:j])))
        i = j + 1
    return blocks


def indented_commands() -> list[str]:
    """ccpipe commands in 4-space indented code blocks (the README's convention is fenced blocks)."""
    return [line.strip() for line in README.read_text(encoding="utf-8").splitlines()
            if line.startswith("    ") and line.strip().startswith("ccpipe ")]


def prose_mentions() -> list[str]:
    """``ccpipe ...`` code spans outside code blocks."""
    text = re.sub(r"^```.*?^```", "", README.read_text(encoding="utf-8"), flags=re.S | re.M)
    return [m for m in re.findall(r"`(ccpipe [^`]+)`", text) if re.match(r"ccpipe [a-z]", m)]


# ---- help checks -------------------------------------------------------------------------------------


def _env(home: Path | None = None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CCPIPE_")}
    env["CCPIPE_HOME"] = str(home) if home else env.get("TMPDIR", "/tmp") + "/ccpipe-readme-help-home"
    return env


@cache
def help_text(command: str, sub: str = "") -> str:
    """``ccpipe COMMAND [SUB] --help`` (raises with the output when the command fails)."""
    argv = [str(CCPIPE), command, *([sub] if sub else []), "--help"]
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(), timeout=300)
    if done.returncode != 0:
        raise AssertionError(f"'ccpipe {command} {sub} --help' failed (exit {done.returncode}): "
                             f"{(done.stderr or done.stdout).strip().splitlines()[-1:]}")
    return done.stdout


@cache
def beam_flags() -> frozenset[str]:
    """Beam's own flags, which batch and stream pass through (Dask's included)."""
    from apache_beam.options.pipeline_options import PipelineOptions

    try:
        import apache_beam.runners.dask.dask_runner  # noqa: F401 - registers DaskOptions
    except ImportError:
        pass
    return frozenset(f"--{name}" for name in PipelineOptions([]).get_all_options(retain_unknown_options=False))


def unknown_flags(command_line: str) -> list[str]:
    """The flags of an example its command's --help does not show (Beam's allowed for batch/stream)."""
    text = command_line.split(" #", 1)[0]
    words = re.findall(r"ccpipe ([a-z][a-z-]*)(?:\s+([a-z][a-z-]*))?", text)
    command, second = words[0]
    helps = help_text(command)
    if command == "transparency":
        subs = [s for s in re.split(r"[|\s]", text.split("transparency", 1)[1]) if re.fullmatch(r"[a-z]+", s)]
        subs = [s for s in subs if s in re.findall(r"\{([a-z,]+)\}", helps)[0].split(",")]
        helps += "".join(help_text(command, s) for s in subs)
    known = set(re.findall(r"(--[a-z][a-z0-9_-]*)", helps))
    if command in ("batch", "stream"):
        known |= beam_flags()
    flags = re.findall(r"(?<![\w-])(--[a-z][a-z0-9_-]*)", text)
    return [f for f in flags if f not in known]


def check_against_help(command_lines: list[str]) -> list[str]:
    """Problems of examples checked against --help."""
    problems = []
    for line in command_lines:
        try:
            bad = unknown_flags(line)
        except AssertionError as err:
            problems.append(f"{line[:90]!r}: {err}")
            continue
        if bad:
            problems.append(f"{line[:90]!r}: flags not in its --help: {bad}")
    return problems


def test_every_readme_command_is_run_or_listed():
    """Each ccpipe command in a code block is in a run block, a synopsis, or NOT_RUN with a reason."""
    assert not indented_commands(), f"use fenced blocks for ccpipe examples: {indented_commands()}"
    blocks = readme_blocks()
    assert any(b.marker == "run" for b in blocks), "the README has no <!-- run --> block"
    unlisted, seen = [], set()
    for block in blocks:
        if block.marker:
            continue
        for first in block.first_lines():
            seen.add(first)
            if first not in NOT_RUN:
                unlisted.append(f"README line {block.line}: {first}")
    assert not unlisted, "ccpipe examples neither run nor listed in NOT_RUN:\n" + "\n".join(unlisted)
    stale = sorted(set(NOT_RUN) - seen)
    assert not stale, f"NOT_RUN lists examples the README no longer has: {stale}"
    assert all(reason.strip() for reason in NOT_RUN.values())


def test_examples_not_run_match_their_help():
    """Synopses, NOT_RUN examples and prose mentions name real commands and flags (underscore spelling)."""
    lines = [c for b in readme_blocks() if b.marker != "run" for c in b.commands()]
    lines += prose_mentions()
    lines.append("ccpipe " + " ".join(FIXTURES))
    problems = check_against_help(sorted(set(lines)))
    assert not problems, "README examples that do not match their command's --help:\n" + "\n".join(problems)


# ---- run blocks --------------------------------------------------------------------------------------


def _shim(folder: Path, log: Path) -> None:
    """A ``ccpipe`` first on the PATH that logs each call, then runs the real one."""
    folder.mkdir()
    shim = folder / "ccpipe"
    shim.write_text(f'#!/usr/bin/env bash\nprintf "%s\\n" "$*" >> {shlex.quote(str(log))}\n'
                    f'exec {shlex.quote(str(CCPIPE))} "$@"\n')
    shim.chmod(shim.stat().st_mode | stat.S_IXUSR)


def _given_files(work: Path) -> dict[str, str]:
    """The files the README tells the reader to provide, from the demo corpus."""
    phones = []
    for line in (work / "out/fixtures/input/registrations.jsonl").read_text().splitlines():
        row = json.loads(line)
        if row["tenant_id"] == "tnt-nl-003" and row.get("phone"):
            phones.append(row["phone"])
    assert len(phones) >= 2, "the small corpus must hold two tnt-nl-003 registrations with a phone"
    given = {"subject.txt": phones[0] + "\n", "agency-subject.txt": phones[1] + "\n", "pass.txt": PASSPHRASE + "\n"}
    for name, text in given.items():
        (work / name).write_text(text)
        (work / name).chmod(0o600)
    return given


def test_readme_run_blocks_run_as_written(tmp_path):
    """The README's run blocks, in order, from a make-demo layout; each command exits 0."""
    work, home, log = tmp_path / "repo", tmp_path / "home", tmp_path / "ccpipe-calls.log"
    work.mkdir()
    _shim(tmp_path / "shim", log)
    env = _env(home)
    env["PATH"] = f"{tmp_path / 'shim'}{os.pathsep}{BIN}{os.pathsep}{env.get('PATH', '')}"
    made = subprocess.run([str(CCPIPE), *FIXTURES], cwd=work, env=env, capture_output=True, text=True, timeout=300)
    assert made.returncode == 0, made.stderr
    _given_files(work)

    failures, expected_calls, outputs = [], 0, {}
    for block in [b for b in readme_blocks() if b.marker == "run"]:
        if block.lang == "python":
            argv = [str(BIN / "python"), "-c", block.text]
        else:
            assert block.lang in ("sh", "bash"), f"README line {block.line}: run blocks are sh, bash or python"
            argv = ["bash", "-c", "set -euo pipefail\n" + block.text]
            expected_calls += len(block.commands())
        before = len(log.read_text().splitlines()) if log.exists() else 0
        done = subprocess.run(argv, cwd=work, env=env, capture_output=True, text=True, timeout=600)
        calls = (log.read_text().splitlines() if log.exists() else [])[before:]
        outputs[block.line] = done.stdout
        if done.returncode != 0:
            tail = "\n      ".join((done.stderr.strip() or done.stdout.strip()).splitlines()[-4:])
            last = calls[-1] if calls else "(no ccpipe call)"
            failures.append(f"README line {block.line}: exit {done.returncode} at 'ccpipe {last}'\n      {tail}")
        elif block.lang != "python" and len(calls) != len(block.commands()):
            failures.append(f"README line {block.line}: {len(calls)} ccpipe calls ran, the block has "
                            f"{len(block.commands())}")
    assert not failures, "README run blocks that failed:\n" + "\n".join(failures)

    # What the walkthroughs leave behind, exactly.
    manifest = json.loads((work / "out/_manifests/first-run.json").read_text())
    assert manifest["reconciled"] is True
    assert manifest["records_read"] == manifest["records_written"] + manifest["records_dead_lettered"]
    assert {p.name for p in (work / "out/_reports").iterdir()} >= {"first-run.html", "first-run.json"}
    flows = {f["flow"] for f in json.loads((work / "out/_manifests/with-flows.json").read_text())["flows"]}
    assert flows <= {"transcription", "recording_archive", "us_monitoring"} and "transcription" in flows
    access = json.loads((work / "access.json").read_text())
    exported = json.loads((work / "export.json").read_text())
    assert access["rows"] == exported["rows"] == 1
    assert b"+31" not in (work / "export.ccx").read_bytes()
    results = [json.loads(line) for text in outputs.values() for line in text.splitlines() if line.startswith("{")]
    assert [r["rows_removed"] for r in results if "rows_removed" in r] == [access["rows"]]  # the deletion
    assert oct((work / "export.json").stat().st_mode & 0o777) == "0o600"
    for name in ("transparency-2026H1.html", "transparency-2026H1.csv", "transparency-2026H1.json", "demo-2026H1.html"):
        assert (work / name).stat().st_size > 0, name
    report = json.loads((work / "transparency-2026H1.json").read_text())
    assert report["requests_received"] == 1 and report["draft"] is True
    assert len(log.read_text().splitlines()) == expected_calls


def test_dsar_subject_never_on_the_command_line(tmp_path):
    """The refusals the README's DSAR text promises: a literal identifier, and an e-mail that is not one."""
    env = _env(tmp_path / "home")
    registry = tmp_path / "tenants.yaml"
    registry.write_text("tenants:\n- {tenant_id: tnt-nl-003, name: Demo, region: nl, status: active}\n")
    imported = subprocess.run([str(CCPIPE), "tenants", "import", str(registry)], capture_output=True, text=True,
                              env=env, timeout=300)
    assert imported.returncode == 0, imported.stderr
    common = ["--tenant", "tnt-nl-003", "--kind", "access", "--actor", "adm", "--role", "customer_admin",
              "--actor_tenant", "tnt-nl-003"]
    literal = subprocess.run([str(CCPIPE), "dsar", "open", *common, "--subject_kind", "phone", "--subject",
                              "+31612557063"], capture_output=True, text=True, env=env, timeout=300)
    assert literal.returncode == 2 and "standard input" in literal.stderr and "+31612557063" not in literal.stderr
    bad = subprocess.run([str(CCPIPE), "dsar", "open", *common, "--subject_kind", "email", "--subject", "-"],
                         input="not-an-email\n", capture_output=True, text=True, env=env, timeout=300)
    assert bad.returncode == 2 and "not an e-mail address" in bad.stderr and "not-an-email" not in bad.stderr
