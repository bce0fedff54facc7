"""Webhook targets that point inward are refused at registration, and delivery connects to
the exact address it checked (no DNS rebinding between check and connect)."""

import pytest

from generations import webhooks
from workstation.errors import InvalidInput

pytestmark = pytest.mark.django_db

# What a hostile DNS would answer for the names of the outside probe.
INWARD = {
    "169.254.169.254.nip.io": ["169.254.169.254"],
    "127.0.0.1.nip.io": ["127.0.0.1"],
    "localtest.me": ["127.0.0.1", "::1"],
    "metadata.google.internal": ["169.254.169.254"],
    "kubernetes.default.svc": ["10.96.0.1"],
    "mixed.example": ["93.184.216.34", "10.0.0.7"],  # one private answer is enough
}
PUBLIC = {"hooks.partner.example": ["93.184.216.34"]}


@pytest.fixture
def resolver(monkeypatch):
    answers = {**INWARD, **PUBLIC}
    calls = []

    def resolve(host, port):
        calls.append(host)
        answer = answers.get(host, [])
        return answer.pop(0) if answer and isinstance(answer[0], list) else answer

    monkeypatch.setattr(webhooks, "resolve", resolve)
    return answers, calls


@pytest.mark.parametrize("host", sorted(INWARD))
def test_names_that_resolve_inward_are_refused(resolver, settings, host):
    settings.WEBHOOK_ALLOW_LOCAL = False
    with pytest.raises(InvalidInput) as refused:
        webhooks.validate_webhook_url(f"https://{host}/hook")
    assert "non-public" in refused.value.fields["url"][0]


@pytest.mark.parametrize("port", [6379, 22, 8443])
def test_ports_other_than_the_allowed_ones_are_refused(resolver, settings, port):
    settings.WEBHOOK_ALLOW_LOCAL = False
    with pytest.raises(InvalidInput):
        webhooks.validate_webhook_url(f"https://hooks.partner.example:{port}/hook")
    settings.WEBHOOK_ALLOWED_PORTS = [443, port]
    assert webhooks.validate_webhook_url(f"https://hooks.partner.example:{port}/hook")


def test_a_public_name_is_accepted(resolver, settings):
    settings.WEBHOOK_ALLOW_LOCAL = False
    url = "https://hooks.partner.example/portraits"
    assert webhooks.validate_webhook_url(url) == url


def test_delivery_connects_to_the_address_it_checked(resolver, settings, monkeypatch):
    """The name answers a public address to the check, then loopback: the connection still
    goes to the checked public address, never to 127.0.0.1."""
    settings.WEBHOOK_ALLOW_LOCAL = False
    answers, calls = resolver
    answers["rebind.example"] = [["93.184.216.34"], ["127.0.0.1"], ["127.0.0.1"]]
    connected = []

    def create_connection(address, timeout=None, *args, **kwargs):
        connected.append(address)
        raise ConnectionRefusedError("test: no network")

    monkeypatch.setattr(webhooks.socket, "create_connection", create_connection)
    reason = webhooks._post("https://rebind.example/hook", body=b"{}", headers={})
    assert reason == "unreachable: ConnectionRefusedError"
    assert connected == [("93.184.216.34", 443)]
    assert calls.count("rebind.example") == 1  # resolved once, for both check and connect


def test_delivery_refuses_a_name_that_now_resolves_inward(resolver, settings, monkeypatch):
    settings.WEBHOOK_ALLOW_LOCAL = False
    answers, _ = resolver
    answers["turned.example"] = [["127.0.0.1"]]
    monkeypatch.setattr(
        webhooks.socket, "create_connection", lambda *a, **k: pytest.fail("must not connect")
    )
    reason = webhooks._post("https://turned.example/hook", body=b"{}", headers={})
    assert reason and reason.startswith("refused")


def test_the_real_resolver_answers_for_loopback():
    assert set(webhooks.resolve("localhost", 80)) & {"127.0.0.1", "::1"}
