"""``/`` until the operator dashboard exists: a page that says where to go."""


def test_the_root_page_links_the_admin_the_api_docs_and_the_metrics(client):
    response = client.get("/")
    assert response.status_code == 200
    page = response.content.decode()
    assert all(f'href="{path}"' in page for path in ("/admin/", "/api/docs/", "/metrics"))
