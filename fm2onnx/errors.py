"""The one exception type the CLI turns into a one-line message instead of a traceback."""


class Fm2OnnxError(Exception):
    """A user-facing error: bad input file, bad checkpoint, bad option. The message names the culprit."""


class DataError(Fm2OnnxError):
    """Malformed input data; the message starts with ``file:line:``."""


class CheckpointError(Fm2OnnxError):
    """A file that is not a loadable fm2onnx checkpoint; the message names the file."""


class WriteError(Fm2OnnxError):
    """An output could not be written (a full disk, a read-only or unwritable folder); the message names
    it, and nothing half-written was left under its name."""
