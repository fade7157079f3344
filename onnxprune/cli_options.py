"""Command-line options of `onnxprune` prune beyond the ratios: budgets, depth, weight sparsity
(one function per family, each adding its flags to the prune parser)."""

from __future__ import annotations

import argparse

from onnxprune.budget import ALLOCATIONS, DEFAULT_MAX_GROUP_RATIO


def add_budget_options(p: argparse.ArgumentParser) -> None:
    budget = p.add_argument_group("budgets (instead of --ratio; onnxprune.budget)")
    budget.add_argument("--target-macs", type=float, metavar="F", help="keep this fraction of the MACs")
    budget.add_argument(
        "--target-params", type=float, metavar="F", help="keep this fraction of the parameters"
    )
    budget.add_argument(
        "--target-speedup",
        type=float,
        metavar="X",
        help="make the model X times faster, measured in ONNX Runtime at --threads, --batch, --input-shape",
    )
    budget.add_argument(
        "--allocate",
        choices=ALLOCATIONS,
        default="global",
        help="how groups share the budget: global (one threshold on scores made comparable across "
        "groups), uniform (one ratio), sensitivity (measured curves) (default: global)",
    )
    budget.add_argument(
        "--max-group-ratio",
        type=float,
        default=DEFAULT_MAX_GROUP_RATIO,
        metavar="R",
        help=f"no group loses more than this fraction of its units ({DEFAULT_MAX_GROUP_RATIO})",
    )
    budget.add_argument("--threads", type=int, default=2, help="ONNX Runtime threads for timing (2)")
    budget.add_argument("--batch", type=int, default=1, help="batch size for MACs and timing (1)")


def add_depth_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--drop-blocks", type=int, metavar="N", help="drop N whole residual branches first (x + f(x) -> x)"
    )
    p.add_argument("--depth-ratio", type=float, metavar="R", help="drop this share of the residual branches")
    p.add_argument(
        "--depth-criterion",
        choices=("block-influence", "drop-fidelity", "weight-norm"),
        help="which branches go: block-influence (1 - cos(x, x + f(x)), needs --calib; the default with "
        "it), drop-fidelity (output cosine with the branch dropped alone, needs --calib), weight-norm "
        "(RMS of the branch's last weights: a weak proxy; the default without --calib)",
    )


def add_sparsity_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--sparsity",
        type=float,
        metavar="S",
        help="zero this fraction of the Conv/Gemm/MatMul weight entries after the structural prune "
        "(smallest |W|; Wanda's |W|*||X|| with --calib); --ratio may then be left out",
    )
    p.add_argument(
        "--sparsity-scope",
        choices=("layer", "global"),
        default="layer",
        help="--sparsity per layer (default) or over all layers at once",
    )
    p.add_argument(
        "--nm", metavar="N:M", help="keep the N largest of every M weights along the reduction axis"
    )
    p.add_argument(
        "--sparse-format",
        action="store_true",
        help="store sparsified weights as sparse initializers where smaller (checked in ONNX Runtime)",
    )
