"""One exception type for every user-facing error, so CLIs can print one clean line."""


class GramError(Exception):
  """A problem with the user's input (file, record, field or option), not a bug."""
