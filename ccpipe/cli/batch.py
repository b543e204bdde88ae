"""``ccpipe batch``: input files to encrypted, regional Parquet, then the run's summary and report.

The console shows ccpipe's own warnings, a one-line progress display (records parsed per second,
rows written, elapsed time; live at a terminal, its final line otherwise) and the run's summary. The
log of the run (Beam, gRPC, absl, Presidio and ccpipe's own, from this process and from every worker
process) goes to ``$CCPIPE_HOME/logs/<run_id>.log`` or ``--log_file PATH``; ``-v`` shows it on the
console instead. Worker processes write to the standard error they inherit, so while the pipeline
runs, this process's file descriptors 1 and 2 point at the log file; the display writes to a copy
of the original standard error.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
import time
from contextlib import contextmanager
from logging.handlers import MemoryHandler
from pathlib import Path
from typing import TextIO

from ccpipe.cli.common import Parser
from ccpipe.errors import ConfigError

# Loggers whose warnings reach the console (the rest only the log).
OWN_LOGGERS = ("ccpipe", "pipelines", "transforms", "fixtures")
LOG_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def strict_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """Parse ccpipe's flags strictly; Beam's own flags pass through (known by name, or after ``--``).

    Returns (ccpipe's arguments, argv normalized for PipelineOptions, Beam flags). Flags may be
    spelled with ``-`` or ``_`` (``--pii-config`` is ``--pii_config``). An unknown flag is an error
    naming the nearest valid one: a mistyped flag must never be silently ignored.
    """
    from ccpipe.cli.common import _all_options, canonical_flag, nearest

    ours, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    known = _all_options(parser)
    beam_names = _beam_flag_names()
    # Beam's flags too are handed on in their underscore spelling: Beam discards a hyphenated one
    # (--dask-client-address would silently start a local cluster instead of using the scheduler).
    normalized = [canonical_flag(token, known | {f"--{n}" for n in beam_names}) for token in ours]
    args, unknown = argparse.ArgumentParser.parse_known_args(parser, normalized)
    beam_flags: list[str] = []
    i = 0
    while i < len(unknown):
        token = unknown[i]
        name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else ""
        if not name or name not in beam_names:
            hint = nearest(token, known | {f"--{n}" for n in beam_names})
            parser.error(f"unrecognized argument {token.split('=', 1)[0]!r}{hint} "
                         "(Beam's own flags pass through by name, or after --)")
        beam_flags.append(token)
        i += 1
        while i < len(unknown) and not unknown[i].startswith("--"):
            beam_flags.append(unknown[i])
            i += 1
    return args, normalized + passthrough, beam_flags + passthrough


def check_inputs(patterns: list[str]) -> None:
    """ConfigError naming the flag unless every ``--input`` names at least one file (and no folder).

    Checked before anything is opened or written: a pattern that matches nothing would otherwise
    fail the run while the pipeline is built.
    """
    from apache_beam.io.filesystems import FileSystems

    for pattern in patterns:
        try:
            matched = FileSystems.match([pattern])[0].metadata_list
        except Exception as err:  # noqa: BLE001 - any file system's listing error, about a user-named path
            first = (str(err).strip().splitlines() or [""])[0]
            raise ConfigError(f"--input {pattern!r} cannot be listed: {type(err).__name__}: {first}") from None
        if not matched:
            raise ConfigError(f"--input {pattern!r} matches no file; give an existing file or a glob that matches")
        for meta in matched:
            if "://" not in meta.path and os.path.isdir(meta.path):
                raise ConfigError(f"--input {pattern!r} names the folder {meta.path!r}; give files, "
                                  f"e.g. {os.path.join(meta.path, '*.jsonl')!r}")


def _wants_verbose(argv: list[str]) -> bool:
    ours = argv[: argv.index("--")] if "--" in argv else argv
    return any(token in ("-v", "--verbose") for token in ours)


class _Console:
    """Where the user sees this run: a rich console on a copy of the original standard error."""

    def __init__(self) -> None:
        from rich.console import Console

        sys.stderr.flush()
        self.file: TextIO = os.fdopen(os.dup(2), "w", buffering=1, encoding="utf-8", errors="replace")
        self.rich = Console(file=self.file, highlight=False, soft_wrap=True)

    def close(self) -> None:
        self.file.close()


class _ConsoleWarnings(logging.Handler):
    """ccpipe's own warnings and errors on the console (above a live display)."""

    def __init__(self, console: _Console) -> None:
        super().__init__(logging.WARNING)
        self._console = console
        self.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
        self.addFilter(lambda record: record.name.split(".")[0] in OWN_LOGGERS)

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self._console.rich.print(self.format(record), markup=False)
        except Exception:  # noqa: BLE001 - logging must not fail the run
            self.handleError(record)


def _quiet_logging(console: _Console) -> MemoryHandler:
    """Root logging to a buffer (flushed into the run's log once it exists) and own warnings to the console."""
    root = logging.getLogger()
    for handler in list(root.handlers):
        root.removeHandler(handler)
    buffer = MemoryHandler(capacity=100_000, flushLevel=logging.CRITICAL + 1, target=None, flushOnClose=False)
    buffer.setFormatter(logging.Formatter(LOG_FORMAT))
    root.addHandler(buffer)
    root.addHandler(_ConsoleWarnings(console))
    return buffer


def log_path(log_file: str | None, run_id: str) -> Path:
    """``--log_file`` (its folder must exist) or ``$CCPIPE_HOME/logs/<run_id>.log`` (folder 0700)."""
    from ccpipe.keystore import ensure_home

    if log_file:
        path = Path(log_file)
        if not path.parent.is_dir():
            raise ConfigError(f"--log_file {log_file!r}: the folder {str(path.parent)!r} does not exist")
        if path.is_dir():
            raise ConfigError(f"--log_file {log_file!r} is a folder; give a file name")
        return path
    folder = ensure_home() / "logs"
    folder.mkdir(mode=0o700, exist_ok=True)
    return folder / f"{run_id}.log"


def _open_log(path: Path) -> int:
    try:
        return os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    except OSError as err:
        raise ConfigError(f"--log_file {str(path)!r} cannot be written: {err.strerror}") from None


@contextmanager
def _output_to(fd: int):
    """Point file descriptors 1 and 2 (this process's and the workers' it starts) at ``fd``; restore after."""
    sys.stdout.flush()
    sys.stderr.flush()
    saved = os.dup(1), os.dup(2)
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        os.close(saved[0])
        os.close(saved[1])


@contextmanager
def _progress_folder():
    """A private folder for the workers' progress counts, named to them by ``$CCPIPE_PROGRESS_DIR``."""
    import shutil
    import tempfile

    from ccpipe.progress import ENV

    folder = tempfile.mkdtemp(prefix="ccpipe-progress-")
    previous = os.environ.get(ENV)
    os.environ[ENV] = folder
    try:
        yield folder
    finally:
        if previous is None:
            os.environ.pop(ENV, None)
        else:
            os.environ[ENV] = previous
        shutil.rmtree(folder, ignore_errors=True)


def _parser() -> Parser:
    from pipelines.batch import LOCAL_RUNNERS, BatchOptions

    parser = Parser(
        prog="ccpipe batch",
        description="Run the batch pipeline. Beam flags (--prism_location, Dask/Flink/Dataflow flags) pass through. "
        "The console shows progress and the summary; the run's log (Beam, workers, PII engine) goes to "
        "$CCPIPE_HOME/logs/RUN_ID.log.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument(
        "--runner", default="FnApiRunner",
        help=f"Beam runner (default FnApiRunner: local, no downloads; local choices {list(LOCAL_RUNNERS)}; "
        "DaskRunner with --dask_client_address HOST:PORT)",
    )
    parser.add_argument("--log_file", help="the run's log (default $CCPIPE_HOME/logs/RUN_ID.log)")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="show the run's log (Beam, workers, PII engine) on the console instead of a log file")
    return parser


def _beam_flag_names() -> set[str]:
    """Every flag name Beam's options classes define, Dask's (--dask_client_address, ...) included.

    Beam's own list is by destination (``address``, not ``dask_client_address``) and knows Dask's
    options only once their module is imported.
    """
    import apache_beam.runners.dask.dask_runner  # noqa: F401 - registers DaskOptions
    from apache_beam.options.pipeline_options import PipelineOptions, _BeamArgumentParser

    flags = _BeamArgumentParser(allow_abbrev=False)
    for cls in {str(c): c for c in PipelineOptions.__subclasses__()}.values():
        cls._add_argparse_args(flags)
    return set(PipelineOptions([]).get_all_options(retain_unknown_options=False)) | {
        s[2:] for action in flags._actions for s in action.option_strings if s.startswith("--")}


def main(argv: list[str]) -> int:
    """Run the batch pipeline; exit 0 when the run reconciles, 3 when it does not."""
    verbose = _wants_verbose(argv)
    root = logging.getLogger()
    handlers = list(root.handlers)  # restored after the run: main() leaves logging as it found it
    console = None if verbose else _Console()
    buffer = None if console is None else _quiet_logging(console)
    try:
        return _main(argv, console, buffer)
    finally:
        if buffer is not None:
            buffer.close()
        for handler in list(root.handlers):
            root.removeHandler(handler)
        for handler in handlers:
            root.addHandler(handler)
        if console is not None:
            console.close()


def _main(argv: list[str], console: _Console | None, buffer: MemoryHandler | None) -> int:
    from pipelines.batch import BatchOptions, config_from_options

    args, argv, beam_flags = strict_args(_parser(), argv)
    if args.verbose and args.log_file:
        raise ConfigError("--log_file and --verbose exclude each other: --verbose shows the log on the console")
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers!r} must be at least 1")
    if args.input:
        check_inputs(args.input)
    options = BatchOptions(argv)
    config = config_from_options(options.view_as(BatchOptions))
    if console is None or buffer is None:  # --verbose: the log stays on the console
        return _run(config, args, beam_flags, None, None)
    path = log_path(args.log_file, config.run_id)
    fd = _open_log(path)
    handler = logging.StreamHandler(os.fdopen(os.dup(fd), "a", buffering=1, encoding="utf-8", errors="replace"))
    handler.setFormatter(logging.Formatter(LOG_FORMAT))
    root = logging.getLogger()
    root.addHandler(handler)
    buffer.setTarget(handler)
    buffer.flush()  # what was logged before the log file existed (e.g. Beam's import notices)
    root.removeHandler(buffer)
    try:
        return _run(config, args, beam_flags, console, path, fd)
    finally:
        root.removeHandler(handler)
        handler.close()
        os.close(fd)


def _run(config, args, beam_flags: list[str], console: _Console | None, path: Path | None, fd: int = -1) -> int:
    from ccpipe.manifest import summary
    from ccpipe.progress import RunDisplay, elapsed_text
    from pipelines.batch import pipeline_options, run
    from transforms.manifest import manifest_path

    options = pipeline_options(args.runner, args.workers, beam_flags)
    started = time.monotonic()
    if console is None:
        manifest = run(config, options)
    else:
        from rich.live import Live

        with _progress_folder() as folder:
            display = RunDisplay(folder, f"run {config.run_id}", started)
            live = Live(display, console=console.rich, refresh_per_second=4, transient=True,
                        redirect_stdout=False, redirect_stderr=False)
            with _output_to(fd):
                if console.rich.is_terminal:
                    with live:
                        manifest = run(config, options)
                else:  # no live display in a file or pipe: the final line below
                    manifest = run(config, options)
    seconds = time.monotonic() - started
    rate = manifest["records_read"] / seconds if seconds > 0 else 0.0
    where = f"; log: {path}" if path else ""
    line = (f"run {config.run_id}: {manifest['records_read']} records in {elapsed_text(seconds)} "
            f"({rate:.0f} records/s){where}")
    if console is None:
        print(line, file=sys.stderr)
    else:
        console.rich.print(line, markup=False)
    report = _write_report(config, fd)
    print(summary(manifest, manifest_path(config.sinks.default_root, config.run_id)))
    if report:
        print(f"  report: {report}")
    return 0 if manifest["reconciled"] else 3


def _write_report(config, fd: int) -> str | None:
    """The run's report (HTML and JSON twin); its analyzer's chatter goes to the run's log like the run's.

    A report that cannot be written does not fail the run (its data is written and reconciled):
    one line says so and how to rebuild it.
    """
    from ccpipe.errors import CcpipeError
    from ccpipe.report import write_run_report

    root, run_id = config.sinks.default_root, config.run_id
    try:
        if fd < 0:
            return str(write_run_report(root, run_id).html)
        with _output_to(fd):
            return str(write_run_report(root, run_id).html)
    except CcpipeError as err:
        print(f"ccpipe batch: the report was not written ({err}); rebuild it with 'ccpipe report {run_id} "
              f"--output {root}'", file=sys.stderr)
        return None
