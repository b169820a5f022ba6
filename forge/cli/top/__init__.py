"""`forge top`: a live terminal view of the fleet, read from the log (Textual).

`model` folds the log into what the view shows, `follow` reads new entries with blocking
reads, `widgets` draws the sections row by row, `transcript` shows a task's output and `app`
ties them together with keys that send the CLI's own requests.
"""

from forge.cli.top.command import top

__all__ = ["top"]
