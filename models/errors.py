"""The one error tree: everything a user can act on derives from ``OmnicastError``.

::

    OmnicastError                 a user (operator, marketer) can fix this; the message says what and how
     ├── ConfigurationError       a setting, URL, secret or template is wrong (DatabaseError, SettingError,
     │                            ChannelConfigError, ...): nothing was done
     ├── InputError               a file, field or argument given is unusable (SourceFileError, ...)
     ├── LockTimeoutError         another run holds a stage's lock on this database for too long
     └── DeliveryError            a message could not be delivered (the channel error tree in channels/base.py)

The CLI turns an ``OmnicastError`` into one line on stderr and exit code 2. Any other exception is a bug and is
shown as one (with its traceback), never disguised as a user mistake.
"""

from __future__ import annotations


class OmnicastError(Exception):
    """Root of every error a user can act on; ``str(error)`` is the one line shown to them."""


class ConfigurationError(OmnicastError):
    """A setting, URL, secret or template is unusable; the message names it and says how to fix it."""


class InputError(OmnicastError):
    """A file, field or command-line argument is unusable; the message names it and says how to fix it."""


class LockTimeoutError(OmnicastError):
    """Another run held a stage's lock on the same database for longer than this run would wait."""


class DeliveryError(OmnicastError):
    """A message could not be delivered (see ``channels.base.ChannelError``)."""
