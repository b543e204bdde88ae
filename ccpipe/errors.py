"""Exceptions shared by ccpipe's domain modules and transforms."""


class CcpipeError(Exception):
    """Base class of every ccpipe error."""


class ConfigError(CcpipeError, ValueError):
    """A configuration value is invalid; the message names parameter, value and what is allowed."""


class RecordError(CcpipeError):
    """A record cannot be processed; ``reason`` is the dead-letter reason code.

    Messages never carry field values, only field names and types, because they end up in
    logs and in the (plain-text) ``error`` column of the dead-letter dataset.
    """

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class KeyUnavailableError(CcpipeError):
    """A data key is missing, destroyed or cannot be unwrapped: fail closed, write nothing."""


class MasterKeyError(CcpipeError):
    """The keystore's master key is absent or does not match the keystore."""
