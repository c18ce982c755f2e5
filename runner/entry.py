"""The ``runner`` command's entry point: the CLI is imported with the cyclic garbage
collector paused.

Importing SQLAlchemy, pydantic and the CLI allocates hundreds of thousands of objects
that live as long as the process, and the collector would walk them again and again
while they are created (about 45 ms of a 0.35 s start). They are then frozen
(``gc.freeze``): later full collections in a long-running worker skip them too.
"""

from __future__ import annotations

import gc


def main() -> None:
    enabled = gc.isenabled()
    gc.disable()
    try:
        from runner.cli import main as cli_main
    finally:
        if enabled:
            gc.enable()
    gc.freeze()
    cli_main()
