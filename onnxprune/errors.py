"""Errors onnxprune raises, each with the exit code the CLI returns for it.

Usage errors (bad options, bad paths), model errors (the model cannot be read or pruned) and
internal errors (a bug in onnxprune) are distinct so that scripts can tell them apart.
"""

from __future__ import annotations

EXIT_OK = 0
EXIT_CHECK_FAILED = 1  # `validate` or `--validate`: a check did not hold
EXIT_USAGE = 2  # bad command line or option values
EXIT_MODEL = 3  # the model could not be loaded, analysed, pruned or written
EXIT_INTERNAL = 4  # a bug in onnxprune: please report it with the --debug traceback


class OnnxPruneError(Exception):
    """Base class: a message meant for the user, and the CLI exit code."""

    exit_code = EXIT_MODEL


class UsageError(OnnxPruneError, ValueError):
    """An option or path the user gave is not acceptable (exit code 2)."""

    exit_code = EXIT_USAGE


class ModelError(OnnxPruneError):
    """The model cannot be loaded or processed (exit code 3).

    The message names the file and, where one is involved, the node and its op type.
    """

    exit_code = EXIT_MODEL

    def __init__(
        self, message: str, *, path: str | None = None, node: str | None = None, op_type: str | None = None
    ) -> None:
        where = []
        if path:
            where.append(str(path))
        if node is not None or op_type:
            where.append(f"node '{node or '<unnamed>'}' ({op_type or '?'})")
        super().__init__(f"{': '.join(where)}: {message}" if where else message)
        self.message = message
        self.path = path
        self.node = node
        self.op_type = op_type

    def located(self, path: str | None) -> ModelError:
        """This error naming `path` as the file, when it names none yet (else itself)."""
        if self.path or not path:
            return self
        return type(self)(self.message, path=path, node=self.node, op_type=self.op_type)


class PlanError(OnnxPruneError):
    """A plan file is malformed or does not fit the model it is applied to (exit code 3)."""

    exit_code = EXIT_MODEL


class InternalError(OnnxPruneError):
    """A bug in onnxprune, not a problem of the model or the options (exit code 4).

    Raised for an exception inside a pass that the pass did not recognise as a model problem:
    the message names the pass (`pass_name`) and, once a pass manager has seen it, the passes
    run before it (`passes_run`, None until then); the original exception is the `__cause__`.
    """

    exit_code = EXIT_INTERNAL

    def __init__(
        self, message: str, *, pass_name: str | None = None, passes_run: tuple[str, ...] | None = None
    ) -> None:
        super().__init__(message)
        self.pass_name = pass_name
        self.passes_run = passes_run
