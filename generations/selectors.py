"""Reads for generations: a job's public state, shared by the REST API, SSE and webhooks."""

from __future__ import annotations

from typing import Any

from jobs.models import RenderJob


def job_state(job: RenderJob) -> dict[str, Any]:
    """Ids, status, error and times: what every view of a consumer job shows. Never prompts,
    specs or storage names."""
    return {
        "id": str(job.pk),
        "kind": job.kind,
        "status": job.status,
        "template": str(job.template_id) if job.template_id else None,
        "avatar": str(job.avatar_id) if job.avatar_id else None,
        "parent": str(job.parent_id) if job.parent_id else None,
        "error": {
            "code": job.error_code,
            "message": job.error_message,
            "details": job.error_details or [],
        }
        if job.error_code
        else None,
        "created_at": job.created_at,
        "started_at": job.started_at,
        "completed_at": job.finished_at,
    }
