"""WriteManifest: gather read counts and write results into ``<root>/_manifests/<run_id>.json``."""

from typing import Any

import apache_beam as beam
from apache_beam.io.filesystems import FileSystems
from apache_beam.pvalue import PCollection

from ccpipe.manifest import build_manifest, dumps
from transforms.write import write_atomically


def manifest_path(root: str, run_id: str) -> str:
    """Where the manifest of a run is written."""
    return FileSystems.join(root, "_manifests", f"{run_id}.json")


def metrics_path(root: str, run_id: str) -> str:
    """Where a batch run's Beam metrics are kept, beside its report: ``<root>/_reports/<run_id>.metrics.json``."""
    return FileSystems.join(root, "_reports", f"{run_id}.metrics.json")


class _CollectFn(beam.CombineFn):
    def create_accumulator(self):
        return {"read": {}, "blank": {}, "results": []}

    def add_input(self, acc, element):
        kind, value = element
        if kind == "start":  # the one element that makes an empty run still write its manifest
            return acc
        if kind == "result":
            acc["results"].append(value)
        else:
            source, n = value
            acc[kind][source] = acc[kind].get(source, 0) + n
        return acc

    def merge_accumulators(self, accumulators):
        out = self.create_accumulator()
        for acc in accumulators:
            for kind in ("read", "blank"):
                for source, n in acc[kind].items():
                    out[kind][source] = out[kind].get(source, 0) + n
            out["results"].extend(acc["results"])
        return out

    def extract_output(self, acc):
        return acc


def _write(acc: dict[str, Any], root: str, run_id: str, extra: dict[str, Any]) -> str:
    manifest = build_manifest(run_id, acc["read"].items(), acc["blank"].items(), acc["results"], extra, root=root)
    path = manifest_path(root, run_id)
    write_atomically(path, dumps(manifest).encode())  # never a partial manifest under its name
    return path


class WriteManifest(beam.PTransform[PCollection, PCollection[str]]):
    """Write the run manifest once every file is written. Input: the pipeline's count streams.

    The counts are combined without Beam's default for an empty input (a side input, which Beam's
    DaskRunner evaluates inside one task): a ``start`` element makes the manifest of a run that read
    nothing instead.
    """

    def __init__(self, root: str, run_id: str, extra: dict[str, Any] | None = None) -> None:
        """``root``: the output root; ``run_id``: the manifest's name; ``extra``: run facts to record."""
        super().__init__()
        self._root, self._run_id, self._extra = root, run_id, dict(extra or {})

    def expand(self, streams) -> PCollection[str]:
        """``streams``: (source lines, blank-line sources, write results)."""
        lines, blanks, results = streams
        pipeline = lines.pipeline
        read = lines | "CountRead" >> beam.combiners.Count.PerElement()
        blank = blanks | "CountBlank" >> beam.combiners.Count.PerElement()
        return (
            (
                read | "TagRead" >> beam.Map(lambda kv: ("read", kv)),
                blank | "TagBlank" >> beam.Map(lambda kv: ("blank", kv)),
                results | "TagResults" >> beam.Map(lambda r: ("result", r)),
                pipeline | "Start" >> beam.Create([("start", None)]),
            )
            | "FlattenCounts" >> beam.Flatten()
            | "Collect" >> beam.CombineGlobally(_CollectFn()).without_defaults()
            | "Write" >> beam.Map(_write, root=self._root, run_id=self._run_id, extra=self._extra)
        )
