"""A roofline estimate of a model's time: each node costs the larger of its MACs at the machine's
measured peak and the bytes it reads and writes at the machine's measured bandwidth.

The "ideal" speedup of a prune is usually quoted as the MACs ratio; on CPUs the ops that cost in
proportion to channels (concatenations, normalizations, depthwise convolutions, element-wise
ops) are bound by memory, not arithmetic, and the MACs ratio overstates what pruning can give.
The roofline ratio counts both. The machine's balance is measured once per thread count with
ONNX Runtime itself: a large MatMul for the peak, a large Add for the bandwidth.

>>> balance = machine_balance(threads=2)  # doctest: +SKIP
>>> roofline_us(model, balance) / roofline_us(pruned, balance)  # doctest: +SKIP
1.7
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import onnx

from onnxprune.macs import NodeShapes
from onnxprune.metrics import mac_terms
from onnxprune.runtime import ort_session

_BYTES_PER_ELEMENT = 4
_MATMUL_SIZE = 512
_ADD_ELEMENTS = 1 << 22


@dataclass(frozen=True)
class MachineBalance:
    """Measured peak MACs and memory bandwidth per microsecond at `threads` ONNX Runtime threads."""

    macs_per_us: float
    bytes_per_us: float
    threads: int


def _best_us(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int, runs: int = 7) -> float:
    session = ort_session(model, threads)
    session.run(None, feeds)
    best = math.inf
    for _ in range(runs):
        start = time.perf_counter_ns()
        session.run(None, feeds)
        best = min(best, (time.perf_counter_ns() - start) / 1e3)
    return best


@functools.lru_cache(maxsize=8)
def machine_balance(threads: int = 2) -> MachineBalance:
    """Peak and bandwidth of this machine under ONNX Runtime, measured (cached per thread count)."""
    n, elements = _MATMUL_SIZE, _ADD_ELEMENTS
    matmul = onnx.parser.parse_model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[{n}, {n}] a, float[{n}, {n}] b) => (float[{n}, {n}] y) {{ y = MatMul(a, b) }}"""
    )
    add = onnx.parser.parse_model(
        f"""<ir_version: 8, opset_import: ["" : 17]>
        g (float[{elements}] a, float[{elements}] b) => (float[{elements}] y) {{ y = Add(a, b) }}"""
    )
    square = {k: np.full((n, n), 0.5, dtype=np.float32) for k in "ab"}
    flat = {k: np.full(elements, 0.5, dtype=np.float32) for k in "ab"}
    macs_us = n**3 / _best_us(matmul, square, threads)
    bytes_us = 3 * elements * _BYTES_PER_ELEMENT / _best_us(add, flat, threads)
    return MachineBalance(macs_us, bytes_us, threads)


def roofline_us(
    model: onnx.ModelProto,
    balance: MachineBalance,
    input_shapes: Mapping[str, Sequence[int]] | None = None,
    batch: int = 1,
) -> float:
    """Sum over nodes of max(MACs / peak, bytes moved / bandwidth), in microseconds; tensors
    whose shapes inference cannot give count no bytes."""
    terms = mac_terms(model, input_shapes, batch=batch)
    shapes = terms.shapes
    formulas = {node.output[0]: (position, node, formula) for position, node, formula in terms.nodes}
    total = 0.0
    for node in model.graph.node:
        moved = sum(
            math.prod(shape)
            for t in (*node.input, *node.output)
            if t and (shape := shapes.get(t)) is not None
        )
        found = formulas.get(node.output[0]) if node.output else None
        macs = found[2](found[1], NodeShapes(shapes, found[1], found[0])) if found else 0
        total += max(macs / balance.macs_per_us, moved * _BYTES_PER_ELEMENT / balance.bytes_per_us)
    return total
