"""Errors the CLI turns into one line and a non-zero exit code. Library code raises, never exits."""


class DcrtError(Exception):
    """Base class: the message is a complete sentence a user can act on."""

    exit_code = 1


class UsageError(DcrtError):
    """Bad arguments or input files."""

    exit_code = 2


class CheckpointError(DcrtError):
    """A checkpoint that is unreadable, unsafe, or not for the chosen preset."""

    exit_code = 2


class BackendUnavailable(DcrtError):
    """A backend (TensorRT, onnxruntime-gpu, CUDA) that this machine does not have."""

    exit_code = 3


# Ctrl-C, wherever it lands: this one line, and the status shells give a program stopped by SIGINT (128 + 2).
INTERRUPTED_MESSAGE = "dcrt: interrupted"
INTERRUPTED_EXIT_CODE = 130
