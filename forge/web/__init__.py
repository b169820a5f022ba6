"""The web dashboard: the fleet now, tasks, one task's timeline, transcript and diff, and a
time slider that rebuilds the fleet at any past moment from the log. It reads the log only."""

from forge.web.app import create_app
from forge.web.auth import new_token
from forge.web.server import HOST, WebServer

__all__ = ["HOST", "WebServer", "create_app", "new_token"]
