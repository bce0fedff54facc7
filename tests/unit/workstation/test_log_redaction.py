"""Signed download links never reach a log."""

import logging

from workstation.log_redaction import RedactingAccessLogger, RedactSignedLinks, redact

TOKEN = "eyJvIjo0Mn0:1v2:abcdefSIGNATURE"


def test_redact_keeps_the_route_and_drops_the_token():
    assert redact(f"GET /api/v1/files/{TOKEN} HTTP/1.1") == "GET /api/v1/files/<redacted> HTTP/1.1"
    assert redact("GET /api/v1/generations/1 HTTP/1.1") == "GET /api/v1/generations/1 HTTP/1.1"


def test_django_log_records_are_redacted():
    record = logging.LogRecord(
        "django.request",
        logging.WARNING,
        __file__,
        1,
        "Not Found: %s",
        (f"/api/v1/files/{TOKEN}",),
        None,
    )
    assert RedactSignedLinks().filter(record)
    assert TOKEN not in record.getMessage() and "<redacted>" in record.getMessage()


def test_gunicorn_access_atoms_are_redacted():
    class Config:
        access_log_format = "%(r)s %(s)s"
        logconfig_dict = {}
        logconfig_json = None
        logconfig = None
        syslog = False
        loglevel = "info"
        errorlog = "-"
        accesslog = None
        capture_output = False
        disable_redirect_access_to_syslog = False
        user = 0
        group = 0
        env = {}

    class Request:
        method = "GET"
        path = f"/api/v1/files/{TOKEN}"
        query = ""
        uri = path
        version = (1, 1)
        headers = []

    class Response:
        status = "200 OK"
        sent = 10
        headers = []
        response_length = 10

    logger = RedactingAccessLogger.__new__(RedactingAccessLogger)
    logger.cfg = Config()
    environ = {"RAW_URI": Request.path, "REQUEST_METHOD": "GET", "SERVER_PROTOCOL": "HTTP/1.1"}
    import datetime

    atoms = logger.atoms(Response(), Request(), environ, datetime.timedelta(seconds=0.1))
    assert TOKEN not in "".join(str(v) for v in atoms.values())


def test_uvicorn_access_lines_are_redacted_through_gunicorns_handlers():
    """The Procfile's uvicorn workers log each request with uvicorn's own access logger, to
    which the worker gives gunicorn's access handlers (uvicorn/workers.py)."""
    from gunicorn.config import Config

    cfg = Config()
    cfg.set("accesslog", "-")
    logger = RedactingAccessLogger(cfg)
    assert logger.access_log.handlers
    record = logging.LogRecord(
        "uvicorn.access",
        logging.INFO,
        __file__,
        1,
        '%s - "%s %s HTTP/%s" %d',
        ("127.0.0.1:5000", "GET", f"/api/v1/files/{TOKEN}", "1.1", 200),
        None,
    )
    for handler in logger.access_log.handlers:
        assert handler.filter(record)
    assert TOKEN not in record.getMessage() and "/api/v1/files/<redacted>" in record.getMessage()
