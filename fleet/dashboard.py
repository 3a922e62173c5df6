"""The operator dashboard's page: the shell Vite built from frontend/ (docs/dashboard.md).

The page carries no data; it reads everything from the REST API and the site's websocket with
the user's session. Served by Django rather than as a bare static file so that a user who is not
logged in is sent to the login page first, and so the CSRF cookie the page's POSTs need is set.
"""

from __future__ import annotations

from django.conf import settings
from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.cache import never_cache
from django.views.decorators.csrf import ensure_csrf_cookie


@never_cache  # the shell names the current build's hashed assets: always ask again
@ensure_csrf_cookie
@login_required
def dashboard(request: HttpRequest) -> HttpResponse:
    index = settings.DASHBOARD_DIR / "index.html"
    try:
        page = index.read_text(encoding="utf-8")
    except FileNotFoundError:
        # A checkout whose frontend is not built yet: say so, and where else to go.
        return render(request, "home.html", {"dashboard_missing": index}, status=503)
    return HttpResponse(page, content_type="text/html; charset=utf-8")
