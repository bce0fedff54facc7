"""Apps that own a job's purpose (previews, generations) listen here instead of being imported
by the rendering app."""

from django.dispatch import Signal

# Sent when a job reaches a terminal state, inside the transaction that records it (so a
# receiver's writes commit atomically with it). Receivers must not do slow I/O. kwargs: job.
render_job_finished = Signal()
