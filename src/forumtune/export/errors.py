"""The one exception the merge and export steps raise for problems the user can fix."""

from forumtune.errors import ForumtuneError


class ExportError(ForumtuneError):
    """An input to merge or GGUF export is missing, malformed or unsupported; the message says which and what to do."""
