"""Errors raised by the chat stage; every message says what to do about it."""

from forumtune.errors import ForumtuneError


class ChatError(ForumtuneError):
    """A chat request or setup that cannot go ahead as asked."""


class ContextTooLongError(ChatError):
    """The prompt plus the tokens asked for do not fit in the model's context window."""


class GenerationError(ChatError):
    """The model failed while generating a reply."""
