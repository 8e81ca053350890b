"""Problems with a command's input, and the one place that reports them.

Every ``python -m paddleseg_ctx.<command>`` runs its ``main`` through
:func:`run`: an exception that is (or was raised because of) a
:class:`UserError` ends the command with its message alone and exit status 1;
``--debug`` keeps the traceback.  Argument and config problems found before
anything is built are argparse usage errors (exit status 2).

Imports nothing but the standard library, so ``infer`` (numpy, OpenCV and an
inference engine only) uses it too.
"""
import argparse
import sys

__all__ = ['ArgumentParser', 'UserError', 'WeightsError', 'PretrainedDownloadError',
           'ConversionError', 'TorchReadError', 'add_debug', 'run', 'user_error',
           'shown']


class UserError(Exception):
    """Base of the errors whose message names the culprit (file, key, value)
    and what to do: weights, configs, data samples, images, training stops."""


class WeightsError(UserError, RuntimeError):
    """Weights could not be found, fetched or matched to a model."""


class PretrainedDownloadError(WeightsError):
    """Pretrained weights could not be downloaded."""


class ConversionError(WeightsError):
    """A checkpoint cannot be converted (or a key map file is malformed)."""


class TorchReadError(WeightsError):
    """A file could not be read as a PyTorch checkpoint."""


def shown(keys, limit=10):
    """The first ``limit`` of ``keys``, comma-separated, for messages."""
    keys = list(keys)
    return ', '.join(keys[:limit]) + (', ...' if len(keys) > limit else '')


class ArgumentParser(argparse.ArgumentParser):
    """argparse's parser whose usage errors are one line (exit status 2)
    instead of the whole usage text before it."""

    def error(self, message):
        self.exit(2, '{}: error: {} (--help lists the flags)\n'.format(
            self.prog, message))


def add_debug(parser):
    """The ``--debug`` flag that :func:`run` looks for."""
    parser.add_argument(
        '--debug',
        action='store_true',
        help='Show the traceback of an error (by default a problem with the '
        'input ends the command with one message).')


def user_error(error):
    """The first ``UserError`` in ``error``'s chain of causes and contexts
    (PaddleSeg and data loaders re-raise ours inside their own), or None."""
    seen = set()
    while error is not None and id(error) not in seen:
        if isinstance(error, UserError):
            return error
        seen.add(id(error))
        error = error.__cause__ or error.__context__
    return None


def message(error):
    """``error``'s text; one re-raised from a DataLoader worker process
    carries the worker's traceback, of which only the last line counts."""
    text = str(error)
    if text.startswith('DataLoader worker('):
        text = text.rsplit('{}: '.format(type(error).__name__), 1)[-1]
    return text.strip()


def run(main, argv=None):
    """``main(argv)`` (``main()`` without ``argv``), ending the process with ``error: <message>`` and exit
    status 1 when it fails because of a ``UserError``, unless ``--debug`` is
    among the arguments."""
    args = sys.argv[1:] if argv is None else argv
    try:
        return main() if argv is None else main(argv)
    except Exception as err:  # noqa: BLE001  (re-raised unless a user error)
        cause = user_error(err)
        if cause is None or '--debug' in args:
            raise
        # On a line of its own: PaddleSeg's progress bar ends without one.
        sys.stderr.write('\nerror: {}\n'.format(message(cause)))
        raise SystemExit(1) from None
