"""What an attempt came to, importable where the documentation has always put it.

Error classifiers (``MAILER_ERROR_CLASSIFIERS``) and signal receivers use
``from mailer.outcome import Verdict, Reply``; the types live with the queue
that records them, in :mod:`mailer.queue.outcome`.
"""

from __future__ import annotations

from mailer.queue.outcome import Outcome, RecipientResult, Reply, Verdict

__all__ = ["Outcome", "RecipientResult", "Reply", "Verdict"]
