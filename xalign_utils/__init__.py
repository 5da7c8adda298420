"""xalign_utils: the slim helper package behind the xalign notebooks.

Importing the package does no work; heavy libraries (torch, transformers) are imported
by the modules that need them.
"""

__version__ = "0.1.0"
