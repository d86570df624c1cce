"""The API docs page works offline: Swagger UI comes from our own static files
(drf-spectacular-sidecar), never from a CDN; and the favicon answers."""

import re
from urllib.parse import urlsplit

import pytest
from django.contrib.staticfiles import finders
from django.contrib.staticfiles.views import serve
from django.test import RequestFactory
from django.urls import reverse

pytestmark = pytest.mark.django_db

# Where a page loads code and styles from: <script src>, <link href>, and the
# string literals of its inline script that name a .js or .css file or a URL.
ASSET = re.compile(r"""(?:src|href)\s*=\s*["']([^"']+)["']|["']([^"'\s]+\.(?:js|css|png|svg|ico))["']""")


def _assets(html: str) -> list[str]:
    return sorted({a or b for a, b in ASSET.findall(html)})


def _static_path(url: str, static_url: str) -> str:
    path = urlsplit(url).path
    assert path.startswith(static_url), f"{url} is not one of our static files"
    return path.removeprefix(static_url)


def test_the_docs_page_loads_swagger_ui_from_our_static_files(client_logged_in, settings):
    response = client_logged_in.get(reverse("api-docs"))
    assert response.status_code == 200
    html = response.content.decode()
    assets = _assets(html)
    scripts = [a for a in assets if a.endswith((".js", ".css"))]
    assert any("swagger-ui-bundle" in a for a in scripts), assets
    assert any("swagger-ui.css" in a for a in scripts), assets
    outside = [a for a in assets if urlsplit(a).scheme in ("http", "https") or a.startswith("//")]
    assert not outside, f"the docs page loads from outside the site: {outside}"

    settings.DEBUG = True  # staticfiles' serve view answers only under DEBUG, as runserver does
    factory = RequestFactory()
    for url in scripts + [a for a in assets if a.endswith((".png", ".svg", ".ico"))]:
        path = _static_path(url, settings.STATIC_URL)
        assert finders.find(path), f"{path} is not found by the staticfiles finders"
        served = serve(factory.get(url), path)
        assert served.status_code == 200, url
        served.close()


def test_the_schema_the_docs_page_reads_is_served(client_logged_in):
    response = client_logged_in.get(reverse("api-schema"))
    assert response.status_code == 200
    assert b"openapi" in response.content


def test_pages_name_the_favicon_and_favicon_ico_leads_to_it(client, client_logged_in):
    login = client.get(reverse("login")).content.decode()
    icon = re.search(r'<link rel="icon" href="([^"]+)"', login)
    assert icon and icon.group(1).endswith("favicon.svg")
    assert finders.find("favicon.svg")

    answer = client.get("/favicon.ico")  # anyone, signed in or not
    assert answer.status_code == 301 and answer["Location"] == icon.group(1)
    assert client_logged_in.get("/favicon.ico")["Location"] == icon.group(1)
