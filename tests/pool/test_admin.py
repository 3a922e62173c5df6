"""The "Nodes" page of the admin: the live pool with Drain / Undrain for those allowed, and the
drain audit beside it."""

from __future__ import annotations

import pytest
from django.contrib.auth.models import User

from fleet.pool.models import DrainChange
from tests.factories import user_with_password

pytestmark = pytest.mark.django_db

PAGE = "/admin/pool/node/"


@pytest.fixture
def superuser(db) -> User:
    return user_with_password("root", superuser=True, email="root@mine.local")


def test_the_admin_index_lists_the_pool(client, superuser):
    client.force_login(superuser)
    page = client.get("/admin/").content.decode()
    assert "Inference pool" in page and PAGE in page and "/admin/pool/drainchange/" in page


def test_the_page_shows_nodes_slices_replicas_and_deployments(client, superuser, busy_pool):
    client.force_login(superuser)
    response = client.get(PAGE)
    assert response.status_code == 200
    page = response.content.decode()
    assert "Plan version <strong>1</strong>" in page
    for text in ("node-a", "node-b", "cpu/0", "cpu/1", "fault@3", "not beating", "3 restarts"):
        assert text in page, text
    assert "1 replica short" in page  # eta's unplaced reason
    assert 'value="Drain node-a"' in page and 'value="Drain node-b"' in page


def test_a_superuser_drains_and_undrains_from_the_page(client, superuser, busy_pool):
    client.force_login(superuser)
    response = client.post(f"{PAGE}node-a/drain/", {"reason": "belt change"}, follow=True)
    assert response.redirect_chain[-1][0] == PAGE
    page = response.content.decode()
    assert "Node node-a drained" in page and 'value="Undrain node-a"' in page
    assert busy_pool.draining()["node-a"]["by"] == "root"
    change = DrainChange.objects.get()
    assert (change.node, change.draining, change.by, change.reason) == (
        "node-a",
        True,
        superuser,
        "belt change",
    )

    response = client.post(f"{PAGE}node-a/undrain/", follow=True)
    assert "Node node-a back in service" in response.content.decode()
    assert busy_pool.draining() == {}
    assert DrainChange.objects.count() == 2


def test_an_unknown_node_is_reported_not_drained(client, superuser, busy_pool):
    client.force_login(superuser)
    response = client.post(f"{PAGE}node-z/drain/", follow=True)
    assert "No node named &#x27;node-z&#x27; in the pool." in response.content.decode()
    assert busy_pool.draining() == {} and not DrainChange.objects.exists()


def test_draining_needs_a_post(client, superuser, busy_pool):
    client.force_login(superuser)
    assert client.get(f"{PAGE}node-a/drain/").status_code == 405
    assert busy_pool.draining() == {}


def test_staff_without_the_drain_permission_see_the_pool_but_no_buttons(client, viewer, busy_pool):
    viewer.is_staff = True
    viewer.save()
    client.force_login(viewer)
    page = client.get(PAGE).content.decode()
    assert "node-a" in page and "Drain node-a" not in page
    assert client.post(f"{PAGE}node-a/drain/").status_code == 403
    assert busy_pool.draining() == {}


def test_the_page_says_when_the_pool_cannot_be_read(client, superuser, outage):
    client.force_login(superuser)
    response = client.get(PAGE)
    assert response.status_code == 200
    assert "cannot be read" in response.content.decode()


def test_the_drain_audit_is_read_only(client, superuser, busy_pool):
    client.force_login(superuser)
    client.post(f"{PAGE}node-b/drain/")
    page = client.get("/admin/pool/drainchange/").content.decode()
    assert "node-b" in page and "root" in page
    change = DrainChange.objects.get()
    assert (
        client.post(f"/admin/pool/drainchange/{change.pk}/delete/", {"post": "yes"}).status_code
        == 403
    )
    assert DrainChange.objects.count() == 1
