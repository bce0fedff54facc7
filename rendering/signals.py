"""Apps that own a job's purpose (previews, generations) listen here instead of being imported
by the rendering app."""

from django.dispatch import Signal

# Sent after a job reaches a terminal state, outside the job's transaction. kwargs: job.
render_job_finished = Signal()
