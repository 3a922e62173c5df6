"""``/``: the operator dashboard's page, behind the login; ``/login/`` for every role (the
admin's login refuses anyone who is not staff); ``/api/v1/me/`` says what the page may offer."""

from __future__ import annotations

import pytest

PAGE = '<!doctype html><html><body><div id="app"></div></body></html>'


@pytest.fixture
def built(settings, tmp_path):
    """A build of the dashboard in a directory of the test's own."""
    settings.DASHBOARD_DIR = tmp_path / "dist"
    settings.DASHBOARD_DIR.mkdir()
    (settings.DASHBOARD_DIR / "index.html").write_text(PAGE)
    return settings.DASHBOARD_DIR


def test_a_visitor_without_a_session_is_sent_to_the_login_and_back(client, built):
    response = client.get("/")
    assert response.status_code == 302
    assert response["Location"] == "/login/?next=/"


def test_a_viewer_logs_in_on_the_dashboards_login_and_gets_the_page(client, built, viewer):
    login = client.get("/login/?next=/")
    assert login.status_code == 200 and b'name="password"' in login.content
    answer = client.post(
        "/login/",
        {"username": viewer.username, "password": "correct horse battery staple", "next": "/"},
    )
    assert answer.status_code == 302 and answer["Location"] == "/"
    page = client.get("/")
    assert page.status_code == 200
    assert page.content.decode() == PAGE
    # The page's POSTs need the CSRF cookie; the shell names hashed assets, so never cached.
    assert "csrftoken" in page.cookies
    assert "no-cache" in page["Cache-Control"]


def test_a_wrong_password_is_refused_with_a_message(client, viewer):
    answer = client.post("/login/", {"username": viewer.username, "password": "nope"})
    assert answer.status_code == 200 and b'role="alert"' in answer.content


def test_without_a_build_the_page_says_how_to_build_it_and_where_else_to_go(
    client, settings, tmp_path, viewer
):
    settings.DASHBOARD_DIR = tmp_path / "nothing-here"
    client.force_login(viewer)
    response = client.get("/")
    assert response.status_code == 503
    page = response.content.decode()
    assert "scripts/bootstrap.sh" in page
    assert all(f'href="{path}"' in page for path in ("/admin/", "/api/docs/", "/metrics"))


def test_logging_out_ends_the_session(client, built, viewer):
    client.force_login(viewer)
    assert client.post("/logout/").status_code == 302
    assert client.get("/").status_code == 302


@pytest.mark.parametrize(
    ("who", "roles", "apply", "remove", "alerts"),
    [
        ("viewer", ["viewer"], False, False, False),
        ("operator", ["operator"], True, False, True),
        ("supervisor", ["supervisor"], True, True, True),
    ],
)
def test_me_names_the_roles_and_what_the_server_will_allow(
    api_client, request, who, roles, apply, remove, alerts
):
    user = request.getfixturevalue(who)
    api_client.force_authenticate(user)
    me = api_client.get("/api/v1/me/").json()
    assert me["username"] == user.username and me["roles"] == roles
    assert me["can"]["applyAllStop"] is apply
    assert me["can"]["removeAllStop"] is remove
    assert me["can"]["changeAlert"] is alerts
    assert me["can"]["drainNode"] is remove  # supervisors drain inference nodes


def test_me_needs_a_login(api_client, db):
    assert api_client.get("/api/v1/me/").status_code == 401
