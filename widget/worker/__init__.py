"""The worker: the outbox loop and its handlers (chat history, Omnichannel
notifications), and retention. ``python -m widget.worker`` runs it alone."""

from widget.worker.jobs import Fail, Handler, Job, Retry
from widget.worker.loop import HANDLERS, in_background, nudge, run_worker
from widget.worker.purge import purge

__all__ = ["HANDLERS", "Fail", "Handler", "Job", "Retry", "in_background", "nudge", "purge", "run_worker"]
