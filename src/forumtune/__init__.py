"""forumtune: turn an online forum into a domain chatbot."""

__version__ = "0.1.0"
