"""``ccpipe batch``: input files to encrypted, regional Parquet, then the run's summary and report."""

from __future__ import annotations

import argparse

from ccpipe.cli.common import Parser
from ccpipe.errors import ConfigError


def strict_args(parser: argparse.ArgumentParser, argv: list[str]) -> tuple[argparse.Namespace, list[str], list[str]]:
    """Parse ccpipe's flags strictly; Beam's own flags pass through (known by name, or after ``--``).

    Returns (ccpipe's arguments, argv normalized for PipelineOptions, Beam flags). Flags may be
    spelled with ``-`` or ``_`` (``--pii-config`` is ``--pii_config``). An unknown flag is an error
    naming the nearest valid one: a mistyped flag must never be silently ignored.
    """
    from apache_beam.options.pipeline_options import PipelineOptions

    from ccpipe.cli.common import _all_options, canonical_flag, nearest

    ours, passthrough = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv else (argv, [])
    known = _all_options(parser)
    normalized = [canonical_flag(token, known) for token in ours]
    args, unknown = argparse.ArgumentParser.parse_known_args(parser, normalized)
    beam_names = set(PipelineOptions([]).get_all_options(retain_unknown_options=False))
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
    return args, [t for t in normalized if t not in unknown] + beam_flags + passthrough, beam_flags + passthrough


def main(argv: list[str]) -> int:
    """Run the batch pipeline; exit 0 when the run reconciles, 3 when it does not."""
    from ccpipe.manifest import summary
    from pipelines.batch import LOCAL_RUNNERS, BatchOptions, config_from_options, pipeline_options, run
    from transforms.manifest import manifest_path

    parser = Parser(
        prog="ccpipe batch",
        description="Run the batch pipeline. Beam flags (--prism_location, Dask/Flink/Dataflow flags) pass through.",
    )
    BatchOptions._add_argparse_args(parser)
    parser.add_argument(
        "--runner", default="FnApiRunner",
        help=f"Beam runner (default FnApiRunner: local, no downloads; local choices {list(LOCAL_RUNNERS)}; "
        "DaskRunner with --dask_client_address HOST:PORT)",
    )
    args, argv, beam_flags = strict_args(parser, argv)
    options = BatchOptions(argv)
    config = config_from_options(options.view_as(BatchOptions))
    if args.workers < 1:
        raise ConfigError(f"--workers {args.workers!r} must be at least 1")
    manifest = run(config, pipeline_options(args.runner, args.workers, beam_flags))
    print(summary(manifest, manifest_path(config.sinks.default_root, config.run_id)))
    return 0 if manifest["reconciled"] else 3
