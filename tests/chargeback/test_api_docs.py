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


def test_the_schema_validates_and_every_close_and_cost_object_operation_has_examples():
    """OpenAPI 3 as drf-spectacular's validator reads it; the close's endpoints, the cost
    objects' and the runs' each carry an example, and every write among them (allocation
    runs' too) takes an Idempotency-Key."""
    from drf_spectacular.generators import SchemaGenerator
    from drf_spectacular.validation import validate_schema

    schema = SchemaGenerator().get_schema(request=None, public=True)
    validate_schema(schema)
    documented = ("/api/v1/periods", "/api/v1/statements", "/api/v1/disputes", "/api/v1/cost-centers")
    documented += ("/api/v1/teams", "/api/v1/features", "/api/v1/allocation-runs")
    missing, unkeyed = [], []
    for path, operations in schema["paths"].items():
        if not path.startswith(documented) or path.endswith(("/summary", "/progress")):
            continue
        for method, operation in operations.items():
            bodies = [
                content
                for response in operation["responses"].values()
                for content in response.get("content", {}).values()
            ]
            if not any("examples" in body for body in bodies) and not path.endswith(".csv"):
                missing.append(f"{method.upper()} {path}")
            headers = {p["name"] for p in operation.get("parameters", []) if p["in"] == "header"}
            if method == "post" and "Idempotency-Key" not in headers:
                unkeyed.append(f"{method.upper()} {path}")
    assert not missing, f"operations without an example: {missing}"
    assert not unkeyed, f"writes without Idempotency-Key: {unkeyed}"
    close = [p for p in schema["paths"] if p.startswith(("/api/v1/periods", "/api/v1/statements", "/api/v1/disputes"))]
    assert len(close) == 17, close
