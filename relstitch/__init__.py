"""relstitch: zero-shot model stitching with relative representations.

The library API lives in its modules (``relstitch.projection``, ``relstitch.anchors``,
``relstitch.checkpoints``, ``relstitch.encoding``, ``relstitch.training``, ``relstitch.stitching``,
``relstitch.matrix``); importing the package itself stays light (no torch), so the CLI starts fast.
"""

__version__ = "0.1.0"
