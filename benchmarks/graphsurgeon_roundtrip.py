"""What an onnx-graphsurgeon import/export round trip costs and loses on the reference models.

The figures behind docs/ARCHITECTURE.md's note on why onnxprune edits the ONNX proto in place
rather than through graphsurgeon. Needs `pip install onnx-graphsurgeon` (not a dependency).

    python benchmarks/graphsurgeon_roundtrip.py > benchmarks/graphsurgeon_roundtrip.md
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import onnx
import onnx_graphsurgeon as gs
from machine import cpu_model, git_state, ram_gib

ROOT = Path(__file__).resolve().parent.parent
MODELS = [
    "models/torchvision/densenet121_dynamo.onnx",
    "models/torchvision/resnet50_dynamo.onnx",
    "models/torchvision/mobilenet_v2_dynamo.onnx",
    "models/transformers/bert_dynamo.onnx",
]


def main() -> None:
    print("# onnx-graphsurgeon round trip (import_onnx, export_onnx)\n")
    versions = f"onnx-graphsurgeon {gs.__version__}, onnx {onnx.__version__}"
    print(f"{versions}; {cpu_model()}, {ram_gib():.0f} GiB; {git_state()}\n")
    print("| model | CPU ms (median of 7) | node metadata kept | value_info kept |")
    print("| --- | --- | --- | --- |")
    for rel in MODELS:
        model = onnx.load(ROOT / rel)
        times = []
        for _ in range(7):
            start = time.process_time()
            out = gs.export_onnx(gs.import_onnx(model))
            times.append(time.process_time() - start)
        meta_before = sum(len(n.metadata_props) for n in model.graph.node)
        meta_after = sum(len(n.metadata_props) for n in out.graph.node)
        print(
            f"| {Path(rel).stem} | {1000 * statistics.median(times):.1f} | {meta_after} of {meta_before} "
            f"| {len(out.graph.value_info)} of {len(model.graph.value_info)} |"
        )


if __name__ == "__main__":
    main()
