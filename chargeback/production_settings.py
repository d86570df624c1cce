"""Production settings: the defaults (`chargeback/settings.py`) with what
`manage.py check --deploy` asks of a site on the internet. Use them with
`DJANGO_SETTINGS_MODULE=chargeback.production_settings`.

The site is served over HTTPS (usually behind a proxy that sets X-Forwarded-Proto);
the secret key comes from the environment and is refused when missing or weak.
"""

import os

from django.core.exceptions import ImproperlyConfigured

from chargeback.settings import *  # noqa: F403 - the defaults, then what production changes
from chargeback.settings import env_bool

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "")
if len(SECRET_KEY) < 50 or len(set(SECRET_KEY)) < 5:
    raise ImproperlyConfigured(
        "DJANGO_SECRET_KEY must be set to a random value of 50 characters or more "
        "(python -c 'import secrets; print(secrets.token_urlsafe(50))')"
    )
DEBUG = False
# Behind a TLS-terminating proxy, trust its scheme header (set DJANGO_BEHIND_PROXY=false if none).
if env_bool("DJANGO_BEHIND_PROXY", True):
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SECURE_SSL_REDIRECT = env_bool("DJANGO_SECURE_SSL_REDIRECT", True)
# A year of HSTS, as browsers' preload lists require; shorten it while first trying HTTPS.
SECURE_HSTS_SECONDS = int(os.environ.get("DJANGO_HSTS_SECONDS", str(365 * 24 * 3600)))
SECURE_HSTS_INCLUDE_SUBDOMAINS = env_bool("DJANGO_HSTS_INCLUDE_SUBDOMAINS", True)
SECURE_HSTS_PRELOAD = env_bool("DJANGO_HSTS_PRELOAD", True)
SESSION_COOKIE_SECURE = True
CSRF_COOKIE_SECURE = True
