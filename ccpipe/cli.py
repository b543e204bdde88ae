"""The ``ccpipe`` command line: ``fixtures``, ``batch`` and ``keys``. Every command has ``--help``."""

from __future__ import annotations

import argparse
import logging
import sys

from ccpipe.crypto import DecryptionError
from ccpipe.errors import CcpipeError

USAGE = """usage: ccpipe COMMAND [ARGS]

commands:
  fixtures   generate a deterministic fixture corpus with ground truth
  batch      run the batch pipeline: input files -> encrypted regional Parquet
  stream     run the streaming pipeline from Kafka or a watched folder, on Prism
  eval-pii   measure PII detection against planted ground truth
  tenants    import or list tenants of the control plane
  keys       keystore and key lifecycle (init, list, rotate, shred --all | --before DATE);
             tenant KEKs in --kms local (default) or openbao://HOST:PORT
  grants     operator access grants (add, revoke, list)
  decrypt    decrypt one field of one row (access-checked, audited)
  retention  apply the retention rules (run [--dry-run] [--as-of DATE])
  dsar       data-subject requests (open, confirm-identity, run, list)
  audit      verify or list the hash-chained audit log
  transparency  government request ledger and semiannual report (add, authority, decide, disclose,
             notify, close, list, report, fixtures)

Run 'ccpipe COMMAND --help' for a command's flags.
"""


def _strict_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """Parse ccpipe's flags strictly; Beam's own flags pass through (known by name, or after ``--``).

    Returns (ccpipe's arguments, argv normalized for PipelineOptions, Beam flags). Flags may be
    spelled with ``-`` or ``_`` (``--pii-config`` is ``--pii_config``). An unknown flag is an error
    naming the nearest valid one: a mistyped flag must never be silently ignored.
    """
    import difflib

    from apache_beam.options.pipeline_options import PipelineOptions

    ours, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    known = {opt for action in parser._actions for opt in action.option_strings}
    normalized = []
    for token in ours:
        name, eq, value = token.partition("=")
        if name.startswith("--") and name not in known and name.replace("-", "_").replace("__", "--", 1) in known:
            name = name.replace("-", "_").replace("__", "--", 1)
        normalized.append(name + eq + value)
    args, unknown = parser.parse_known_args(normalized)
    beam_names = set(PipelineOptions([]).get_all_options(retain_unknown_options=False))
    beam_flags: list[str] = []
    i = 0
    while i < len(unknown):
        token = unknown[i]
        name = token[2:].split("=", 1)[0].replace("-", "_") if token.startswith("--") else ""
        if not name or name not in beam_names:
            choices = sorted(known | {f"--{n}" for n in beam_names})
            near = difflib.get_close_matches(token.split("=", 1)[0].replace("-", "_").replace("__", "--", 1), choices,
                                             n=1)
            hint = f"; did you mean {near[0]}?" if near else ""
            parser.error(f"unrecognized argument {token.split('=', 1)[0]!r}{hint} "
                         "(Beam's own flags pass through by name, or after --)")
        beam_flags.append(token)
        i += 1
        while i < len(unknown) and not unknown[i].startswith("--"):
            beam_flags.append(unknown[i])
            i += 1
    return args, [t for t in normalized if t not in unknown] + beam_flags + passthrough, beam_flags + passthrough


def _batch(argv: list[str]) -> int:
    from pipelines.batch import LOCAL_RUNNERS, BatchOptions, config_from_options, pipeline_options, run

    parser = argparse.ArgumentParser(
        prog="ccpipe batch",
        description="Run the batch pipeline. Beam flags (--prism_location, Flink/Dataflow flags) pass through.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument(
        "--runner", default="FnApiRunner",
        help=f"Beam runner (default FnApiRunner: local, no downloads; local choices {list(LOCAL_RUNNERS)})",
    )
    args, argv, beam_flags = _strict_args(parser, argv)
    options = BatchOptions(argv)
    config = config_from_options(options.view_as(BatchOptions))
    manifest = run(config, pipeline_options(args.runner, args.workers, beam_flags))
    from ccpipe.manifest import summary
    from transforms.manifest import manifest_path

    print(summary(manifest, manifest_path(config.sinks.default_root, config.run_id)))
    return 0 if manifest["reconciled"] else 3


def _stream(argv: list[str]) -> int:
    from pipelines.batch import BatchOptions, common_from_options
    from pipelines.stream import StreamConfig, run, stream_options

    parser = argparse.ArgumentParser(
        prog="ccpipe stream",
        description="Run the streaming pipeline (kafka://HOST:PORT/TOPIC?group=G or watch://DIR) until stopped.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument("--source", required=True, help="kafka://HOST:PORT/TOPIC?group=NAME or watch://DIR")
    parser.add_argument("--runner", default="PrismRunner", help="PrismRunner (default) or FlinkRunner, ...")
    parser.add_argument("--prism_location", help="Prism binary (default .cache/bin/prism, built by 'make prism')")
    parser.add_argument("--window_seconds", type=float, default=2.0, help="write windows (arrival time)")
    args, argv, beam_flags = _strict_args(parser, argv)
    options = BatchOptions(argv)
    common = common_from_options(options.view_as(BatchOptions), streaming=True)
    config = StreamConfig(source=args.source, processing=common, window_seconds=args.window_seconds)
    run(config, stream_options(args.runner, args.prism_location, beam_flags))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``ccpipe`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print(USAGE)
        return 0 if argv else 2
    if argv[0] in ("-V", "--version"):
        from importlib.metadata import version

        print(f"ccpipe {version('ccpipe')}")
        return 0
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for name in ("ccpipe", "pipelines", "transforms"):
        logging.getLogger(name).setLevel(logging.INFO)
    command, rest = argv[0], argv[1:]
    try:
        if command == "fixtures":
            from fixtures.generate import main as fixtures_main

            return fixtures_main(rest)
        if command == "batch":
            return _batch(rest)
        if command == "stream":
            return _stream(rest)
        if command == "eval-pii":
            from ccpipe.pii.evaluate import main as eval_main

            return eval_main(rest)
        from ccpipe.cli_governance import COMMANDS

        if command in COMMANDS:
            return COMMANDS[command](rest)
    except (CcpipeError, DecryptionError) as err:
        print(f"ccpipe {command}: error: {err}", file=sys.stderr)
        return 2
    print(f"ccpipe: unknown command {command!r}\n\n{USAGE}", file=sys.stderr)
    return 2


if __name__ == "__main__":
    sys.exit(main())
