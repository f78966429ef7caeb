"""The base of every error that is the user's input, not a bug: the CLI prints these as one clear line."""


class RoadsideError(Exception):
    """A problem with an input (file, configuration, model, video, broker) that the message explains."""
