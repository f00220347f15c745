"""Errors raised when a checkpoint does not fit the model built from a config."""


class CheckpointMismatchError(ValueError):
    """A checkpoint's state disagrees with the model built from the config.

    Raised while loading state (vocabulary, concept table); the entry points
    re-raise it with the checkpoint's file name in front
    (:func:`mmpcm.apis.naming_checkpoint`).
    """
