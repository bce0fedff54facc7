"""Per-owner asset namespaces: an upload never reveals or shares another owner's object.

Security probe: identical bytes uploaded by a second designer used to answer 200 "already
there" with the first designer's upload time and make the second a co-owner. Each owner's
assets are now their own (deduplicated only within the owner, stored under the owner's own
prefix); the migration that split the shared rows is tested at the end.
"""

import io
from datetime import UTC, datetime

import pytest
from django.core.files.base import ContentFile
from django.core.files.storage import default_storage
from django.core.files.uploadedfile import SimpleUploadedFile
from PIL import Image

from jobs.assets import asset_ref, asset_storage_name, ref_storage_name, resolve_asset_refs
from templates_studio.models import ControlAsset
from templates_studio.spec import render_spec_for_cell, validate_template_spec

pytestmark = pytest.mark.django_db

LONG_AGO = datetime(2020, 1, 2, 3, 4, 5, tzinfo=UTC)
LATER = datetime(2020, 6, 1, tzinfo=UTC)


def _png(size=(96, 80), colour=(10, 120, 200)) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, format="PNG")
    return buffer.getvalue()


def _upload(client, data: bytes, kind: str = "reference"):
    return client.post(
        "/api/studio/assets",
        {"kind": kind, "file": SimpleUploadedFile("a.png", data)},
        format="multipart",
    )


def _read(name: str) -> bytes:
    with default_storage.open(name, "rb") as handle:
        return handle.read()


def test_identical_bytes_from_a_second_designer_are_a_fresh_asset_of_their_own(
    signed_in, make_user
):
    first, second = make_user("designer"), make_user("designer")
    data = _png()
    created = _upload(signed_in(first), data)
    assert created.status_code == 201, created.content
    mine = created.json()
    ControlAsset.objects.filter(pk=mine["id"]).update(created_at=LONG_AGO)  # a telling time
    original = ControlAsset.objects.get(pk=mine["id"])
    original_bytes = _read(original.storage_name)

    intruder = signed_in(second)
    # Before uploading, the second designer cannot reach the first's asset in any way.
    assert intruder.get(f"/api/studio/assets/{mine['sha256']}/image").status_code == 404
    assert intruder.get("/api/studio/assets").json()["count"] == 0

    response = _upload(intruder, data)
    assert response.status_code == 201, response.content  # not "already there"
    theirs = response.json()
    assert theirs["id"] != mine["id"]
    assert theirs["sha256"] == mine["sha256"]  # the hash of their own bytes, nothing more
    assert not theirs["created_at"].startswith("2020-01-02")  # not the first's upload time
    row = ControlAsset.objects.get(pk=theirs["id"])
    assert row.owner == second
    assert row.storage_name == asset_storage_name(theirs["sha256"], second.pk)
    assert row.storage_name != original.storage_name
    assert row.storage_name.startswith(f"assets/{second.pk}/")
    assert _read(row.storage_name) == original_bytes  # their own copy of their own bytes

    # Lists: each sees only their own.
    listed = intruder.get("/api/studio/assets").json()
    assert [a["id"] for a in listed["results"]] == [theirs["id"]]
    listed = signed_in(first).get("/api/studio/assets").json()
    assert [a["id"] for a in listed["results"]] == [mine["id"]]

    # The same owner again: "already there", with their own asset and time.
    again = _upload(intruder, data)
    assert again.status_code == 200 and again.json()["id"] == theirs["id"]
    assert again.json()["created_at"] == theirs["created_at"]

    # Nothing deletes or changes an asset through the API, the first's least of all.
    for path in ("/api/studio/assets", f"/api/studio/assets/{mine['sha256']}/image"):
        assert intruder.delete(path).status_code == 405
    # The image path names the hash: the second designer gets their own copy.
    image = intruder.get(f"/api/studio/assets/{mine['sha256']}/image")
    assert image.status_code == 200
    assert b"".join(image.streaming_content) == _read(row.storage_name)

    # The first's asset is as it was.
    after = ControlAsset.objects.get(pk=mine["id"])
    assert (after.owner, after.created_at, after.storage_name) == (
        first,
        LONG_AGO,
        original.storage_name,
    )
    assert _read(after.storage_name) == original_bytes
    assert ControlAsset.objects.filter(sha256=mine["sha256"]).count() == 2


def test_a_second_designers_pose_is_their_own_too(signed_in, make_user):
    from .test_workflow import POSE

    first, second = make_user("designer"), make_user("designer")
    a = signed_in(first).post("/api/studio/assets/pose", {"pose": POSE}, format="json")
    b = signed_in(second).post("/api/studio/assets/pose", {"pose": POSE}, format="json")
    assert a.status_code == 201 and b.status_code == 201
    assert a.json()["id"] != b.json()["id"] and a.json()["sha256"] == b.json()["sha256"]
    assert b.json()["keypoints"] == a.json()["keypoints"]


def test_renders_read_the_revision_authors_own_object(make_user):
    from templates_studio.services import asset_upload

    first, second = make_user("designer"), make_user("designer")
    data = _png(colour=(200, 30, 30))
    a, _ = asset_upload(user=first, data=data, kind="reference")
    b, created = asset_upload(user=second, data=data, kind="reference")
    assert created and a.pk != b.pk
    spec = validate_template_spec(
        {
            "prompt": "{subject}, portrait",
            "seeds": [1],
            "controls": [{"kind": "reference", "asset": b.sha256, "conditioning_scale": 0.5}],
        },
        base_size=64,
    )
    job_spec = render_spec_for_cell(spec, avatar_id="x", seed=1, asset_owner_id=second.pk)
    assert job_spec["reference"]["image"] == {"asset": asset_ref(second.pk, b.sha256)}
    # The first designer's object going away does not touch the second's renders.
    default_storage.delete(a.storage_name)
    assert resolve_asset_refs(job_spec)["reference"]["image"] == _read(b.storage_name)


def test_job_spec_references_are_checked_and_old_bare_hashes_still_resolve():
    sha = "ab" * 32
    assert ref_storage_name(f"17/{sha}") == f"assets/17/ab/{sha}.png"
    assert ref_storage_name(sha) == f"assets/ab/{sha}.png"  # a job queued before the split
    for bad in ("../x", f"17/../{sha}", f"x/{sha}", sha.upper(), ""):
        with pytest.raises(ValueError):
            ref_storage_name(bad)
        with pytest.raises(FileNotFoundError):
            resolve_asset_refs({"image": {"asset": bad}})
    default_storage.save(f"assets/ab/{sha}.png", ContentFile(b"old shared object"))
    assert resolve_asset_refs({"asset": sha}) == b"old shared object"


# --- The migration that split shared assets ---------------------------------------------------


@pytest.fixture
def executor(transactional_db):
    from django.db import connection
    from django.db.migrations.executor import MigrationExecutor

    def run(target):
        executor = MigrationExecutor(connection)
        executor.loader.build_graph()
        executor.migrate(target)
        return MigrationExecutor(connection).loader.project_state(target).apps

    yield run
    run([("templates_studio", "0003_per_owner_assets")])


def test_migration_splits_a_shared_asset_into_one_row_per_owner(executor):
    old = executor([("templates_studio", "0002_previewcell_job")])
    User = old.get_model("accounts", "User")
    Legacy = old.get_model("templates_studio", "ControlAsset")
    Template = old.get_model("templates_studio", "Template")
    Revision = old.get_model("templates_studio", "TemplateRevision")
    first, second, author, bystander = (
        User.objects.create(email=f"u{i}@example.test", role="designer") for i in range(4)
    )
    data = _png(colour=(1, 2, 3))
    sha = "c" * 64
    shared_name = f"assets/{sha[:2]}/{sha}.png"
    default_storage.save(shared_name, ContentFile(data))
    shared = Legacy.objects.create(
        sha256=sha,
        kind="pose",
        storage_name=shared_name,
        width=96,
        height=80,
        keypoints={"width": 96},
        created_at=LONG_AGO,
    )
    shared.owners.add(first)
    shared.owners.add(second)
    lonely = Legacy.objects.create(
        sha256="d" * 64, kind="canny", storage_name="assets/dd/missing.png", width=64, height=64
    )
    lonely.owners.add(bystander)
    # A published template of the second owner uses the shared asset, and so does a revision
    # of an author who is not among the owners (a row the old code could not have lost).
    template = Template.objects.create(
        owner=second, title="T", slug="t", category="business", status="published"
    )
    spec = {"prompt": "{subject}", "seeds": [1], "controls": [{"kind": "pose", "asset": sha}]}
    published = Revision.objects.create(
        template=template, number=1, spec=spec, created_by=second, created_at=LATER
    )
    Template.objects.filter(pk=template.pk).update(live_revision=published)
    other = Template.objects.create(owner=author, title="U", slug="u", category="business")
    Revision.objects.create(template=other, number=1, spec=spec, created_by=author)

    new = executor([("templates_studio", "0003_per_owner_assets")])
    Asset = new.get_model("templates_studio", "ControlAsset")
    rows = {row.owner_id: row for row in Asset.objects.filter(sha256=sha)}
    assert set(rows) == {first.pk, second.pk, author.pk}
    assert len({row.pk for row in rows.values()}) == 3
    for owner_id, row in rows.items():
        assert row.storage_name == f"assets/{owner_id}/{sha[:2]}/{sha}.png"
        assert _read(row.storage_name) == data
        assert (row.kind, row.width, row.height, row.keypoints) == ("pose", 96, 80, {"width": 96})
    # Only the first uploader keeps the first upload's time.
    assert rows[first.pk].created_at == LONG_AGO
    assert rows[second.pk].created_at == LATER  # their own earliest revision using it
    assert rows[author.pk].created_at not in (LONG_AGO, LATER)  # the migration's time
    # The old shared object stays for job specs written before the split.
    assert _read(shared_name) == data
    # A row whose object was already missing keeps its name (nothing to copy).
    [kept] = Asset.objects.filter(sha256="d" * 64)
    assert kept.owner_id == bystander.pk and kept.storage_name == "assets/dd/missing.png"

    # Every revision still resolves to an asset of its own author.
    NewRevision = new.get_model("templates_studio", "TemplateRevision")
    for revision in NewRevision.objects.all():
        for control in revision.spec["controls"]:
            assert Asset.objects.filter(
                owner_id=revision.created_by_id, sha256=control["asset"]
            ).exists()


def test_migration_rolls_back_to_one_shared_row(executor):
    new = executor([("templates_studio", "0003_per_owner_assets")])
    User = new.get_model("accounts", "User")
    Asset = new.get_model("templates_studio", "ControlAsset")
    a, b = (User.objects.create(email=f"r{i}@example.test", role="designer") for i in range(2))
    sha = "e" * 64
    for user, when in ((b, datetime(2021, 1, 1, tzinfo=UTC)), (a, LONG_AGO)):
        name = f"assets/{user.pk}/{sha[:2]}/{sha}.png"
        default_storage.save(name, ContentFile(b"png"))
        Asset.objects.create(
            owner=user, sha256=sha, kind="depth", storage_name=name, width=1, height=1,
            created_at=when,
        )  # fmt: skip
    old = executor([("templates_studio", "0002_previewcell_job")])
    [row] = old.get_model("templates_studio", "ControlAsset").objects.all()
    assert row.sha256 == sha and row.created_at == LONG_AGO
    assert set(row.owners.values_list("pk", flat=True)) == {a.pk, b.pk}
    assert _read(row.storage_name) == b"png"
