"""One exception type per stage; each message names the input or config key at fault and what to do."""


class ForumtuneError(Exception):
    """Base of every error forumtune reports to the user without a traceback."""


class ConfigError(ForumtuneError):
    pass


class ScrapeError(ForumtuneError):
    pass


class BuildError(ForumtuneError):
    pass


class TrainError(ForumtuneError):
    pass


class EvalError(ForumtuneError):
    pass


class RetrievalError(ForumtuneError):
    """The index stage and the searches over its index."""
