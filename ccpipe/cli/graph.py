"""``ccpipe graph batch|stream --out FILE.svg``: draw a pipeline's Beam graph, without running it.

The graph is built from the real pipelines (``pipelines.batch.build``, ``pipelines.stream.build``)
with placeholder settings: one tenant, sinks under a temporary folder, one one-line input file for
the batch (its reader lists its inputs when the graph is built), a Kafka source for the stream
(nothing connects while the graph is built). The Beam pipeline proto is drawn with pydot: steps as
boxes, ``--depth 2`` opens composite steps (ProcessRecords' ParseRecords, TagPii, ...) as clusters;
``dot -Tsvg`` (Graphviz) renders it. ``--out FILE.dot`` writes the DOT text and needs no Graphviz.

Beam's own ``PipelineGraph`` (interactive display) draws the same top-level steps, but names its
PCollection nodes by ``hash(id) % 10000``: randomized per process and able to merge two PCollections.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from ccpipe.cli.common import Parser
from ccpipe.errors import CcpipeError, ConfigError

# connect_timeout=0: no broker check while the graph is built (nothing connects)
KAFKA_SOURCE = "kafka://127.0.0.1:9092/contact-center?group=ccpipe&connect_timeout=0"


class GraphvizError(CcpipeError):
    """Graphviz (``dot``) is missing or failed to render."""


def _processing(folder: Path, streaming: bool):
    from ccpipe.keystore import KeystoreConfig
    from ccpipe.pii.engine import PiiConfig
    from ccpipe.types import Tenant
    from pipelines.stages import ProcessingConfig
    from transforms.parse import ParseConfig
    from transforms.route import SinkConfig

    tenants = (Tenant("t-example", "Example", "us"),)
    sinks = SinkConfig(default_root=str(folder / "out"), streaming=streaming)
    keystore = KeystoreConfig(str(folder / "keystore.db"), str(folder / "master.key"))
    return ProcessingConfig(tenants, sinks, keystore, PiiConfig(), ParseConfig())


def build_pipeline(which: str, folder: Path):
    """The batch or stream pipeline, built (not run) with placeholder settings under ``folder``."""
    import apache_beam as beam
    from apache_beam.options.pipeline_options import PipelineOptions

    pipeline = beam.Pipeline(options=PipelineOptions(["--runner=FnApiRunner"]))
    if which == "batch":
        from pipelines import batch

        sample = folder / "input.jsonl"
        sample.write_text("{}\n", encoding="utf-8")
        common = _processing(folder, streaming=False)
        config = batch.BatchConfig(inputs=(str(sample),), tenants=common.tenants, sinks=common.sinks,
                                   keystore=common.keystore, run_id="graph")
        batch.build(pipeline, config)
    else:
        from pipelines import stream

        stream.build(pipeline, stream.StreamConfig(source=KAFKA_SOURCE, processing=_processing(folder, True)))
    return pipeline


def to_dot(proto, depth: int = 1, title: str = "") -> str:
    """DOT text of a Beam pipeline proto: steps down to ``depth`` levels, an edge per PCollection passed on."""
    import pydot

    transforms = proto.components.transforms
    parent: dict[str, str] = {}
    for tid, t in transforms.items():
        for sub in t.subtransforms:
            parent[sub] = tid
    roots = [sub for root in proto.root_transform_ids for sub in transforms[root].subtransforms]

    def level(tid: str) -> int:
        n = 1
        while parent.get(tid) and parent[tid] not in proto.root_transform_ids:
            tid, n = parent[tid], n + 1
        return n

    graph = pydot.Dot(graph_type="digraph", rankdir="TB", fontname="Helvetica", label=title, labelloc="t")
    graph.set_node_defaults(shape="box", style="rounded", fontname="Helvetica", color="#1f4e79",
                            fontcolor="#1f4e79")
    graph.set_edge_defaults(color="#555555")
    shown: list[str] = []  # the transform ids drawn as nodes
    clusters: list[str] = []

    def add(tid: str, into) -> None:
        t = transforms[tid]
        name = t.unique_name.rsplit("/", 1)[-1]
        if t.subtransforms and level(tid) < depth:
            clusters.append(tid)
            cluster = pydot.Cluster(f"c{len(clusters)}", label=_quote(name), fontname="Helvetica",
                                    style="rounded", color="#9dc3e6")
            for sub in t.subtransforms:
                add(sub, cluster)
            into.add_subgraph(cluster)
        else:
            shown.append(tid)
            into.add_node(pydot.Node(f"n{len(shown)}", label=_quote(name), tooltip=_quote(t.unique_name)))

    for tid in roots:
        add(tid, graph)
    node_of = {tid: f"n{i}" for i, tid in enumerate(shown, 1)}

    def visible(tid: str) -> str | None:
        while tid and tid not in node_of:
            tid = parent.get(tid, "")
        return node_of.get(tid)

    producer: dict[str, tuple[int, str]] = {}  # PCollection -> (depth, innermost producing transform)
    for tid, t in transforms.items():
        for pcoll in t.outputs.values():
            if pcoll not in producer or level(tid) > producer[pcoll][0]:
                producer[pcoll] = (level(tid), tid)
    edges: list[tuple[str, str]] = []
    for tid in shown:
        for pcoll in transforms[tid].inputs.values():
            source = visible(producer[pcoll][1]) if pcoll in producer else None
            if source and source != node_of[tid] and (source, node_of[tid]) not in edges:
                edges.append((source, node_of[tid]))
    for source, target in edges:
        graph.add_edge(pydot.Edge(source, target))
    return graph.to_string()


def _quote(text: str) -> str:
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


def render_svg(dot_text: str, out: Path) -> None:
    """``dot -Tsvg`` of ``dot_text`` into ``out``; GraphvizError when Graphviz is missing or fails."""
    dot = shutil.which("dot")
    if dot is None:
        raise GraphvizError("Graphviz 'dot' is not on PATH: install graphviz, or write DOT text with --out FILE.dot")
    done = subprocess.run([dot, "-Tsvg"], input=dot_text.encode(), capture_output=True, timeout=120)
    if done.returncode != 0:
        why = (done.stderr.decode(errors="replace").strip().splitlines() or ["no message"])[-1]
        raise GraphvizError(f"Graphviz 'dot' failed (exit {done.returncode}): {why}")
    out.write_bytes(done.stdout)


def main(argv: list[str]) -> int:
    """Write the batch or stream pipeline's graph as SVG (or DOT)."""
    parser = Parser(prog="ccpipe graph", description="Draw the batch or stream pipeline's Beam graph (no run).")
    parser.add_argument("pipeline", choices=["batch", "stream"])
    parser.add_argument("--out", required=True, help="FILE.svg (rendered with Graphviz 'dot') or FILE.dot")
    parser.add_argument("--depth", type=int, default=1,
                        help="levels of steps to draw (1: top-level steps; 2: also their parts, as clusters)")
    args = parser.parse_args(argv)
    out = Path(args.out)
    if out.suffix not in (".svg", ".dot"):
        raise ConfigError(f"--out {args.out!r} must end in .svg or .dot")
    if not out.parent.is_dir():
        raise ConfigError(f"--out {args.out!r}: the folder {str(out.parent)!r} does not exist")
    if not 1 <= args.depth <= 5:
        raise ConfigError(f"--depth {args.depth!r} must be between 1 and 5")
    with tempfile.TemporaryDirectory(prefix="ccpipe-graph-") as folder:
        pipeline = build_pipeline(args.pipeline, Path(folder))
        dot_text = to_dot(pipeline.to_runner_api(), args.depth, f"ccpipe {args.pipeline} pipeline")
    if out.suffix == ".dot":
        out.write_text(dot_text, encoding="utf-8")
    else:
        render_svg(dot_text, out)
    print(f"wrote {os.fspath(out)}")
    return 0
