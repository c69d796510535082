"""Entry point of the one-file `noderuntime` executable (PyInstaller runs this script).

Kept tiny: everything lives in the `noderuntime` package, which the build collects whole
(`--collect-submodules noderuntime --collect-submodules tui`), so modules added later are in.
"""

from __future__ import annotations

import sys

from noderuntime.cli.main import main

if __name__ == "__main__":
    sys.exit(main())
