"""Celery queue names, in one place.

Training and rendering run on separate queues so GPU workers can be dedicated to a lane
(`celery -A workstation worker -Q render`), and a long training job never sits in front of a
portrait. Maintenance (retention sweeps, re-dispatch) is cheap and can run anywhere.
"""

TRAINING_QUEUE = "training"
RENDER_QUEUE = "render"
MAINTENANCE_QUEUE = "maintenance"

ALL_QUEUES = (RENDER_QUEUE, TRAINING_QUEUE, MAINTENANCE_QUEUE)

# Dispatch tokens name their lane's queue explicitly (apply_async(queue=lane)); the lane names
# in jobs.models.Lane equal these queue names.
TASK_ROUTES = {
    "*.tasks.maintenance_*": {"queue": MAINTENANCE_QUEUE},
}
