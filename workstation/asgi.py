"""The ASGI application the web processes serve (Procfile: gunicorn with uvicorn workers).

Django's ASGI handler, wrapped so that event-stream requests run their synchronous parts on
one of the process's few stream threads (workstation/api/sse.py): a waiting stream holds no thread.
"""

import os

from django.core.asgi import get_asgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "workstation.settings")
# Django's ASGI handler runs each request's synchronous part in a thread of its own, so a
# persistent connection would never be reused, only left open until garbage collection
# (Django's docs: disable persistent connections under ASGI). Workers keep theirs.
os.environ.setdefault("DB_CONN_MAX_AGE", "0")
django_application = get_asgi_application()

# Imported after Django is set up: it resolves URLs.
from workstation.api.sse import StreamRequests  # noqa: E402

application = StreamRequests(django_application)
