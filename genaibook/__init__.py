__version__ = "0.2.0"

# The one hand-written line in the package: the book (chapter 6) imports `from genaibook import get_device`.
from .core import get_device  # noqa: E402,F401
