"""The site's URLs: each app brings its own pages (`<app>/urls.py`); the one API root
is `chargeback/api/urls.py`."""

from django.contrib import admin
from django.contrib.auth import views as auth_views
from django.templatetags.static import static
from django.urls import include, path
from django.views.generic import RedirectView

from chargeback.views import disputes, home, signing, statements

urlpatterns = [
    path("", home.home, name="home"),
    path("login/", auth_views.LoginView.as_view(), name="login"),
    path("logout/", auth_views.LogoutView.as_view(), name="logout"),
    path("admin/", admin.site.urls),
    # the monthly close
    path("close/", statements.statements_period, name="statements"),
    path("close/build/", statements.statements_build_view, name="statements-build"),
    path("close/submit/", statements.statements_submit_view, name="statements-submit"),
    path("close/approve/", statements.statements_approve_view, name="statements-approve"),
    path("close/close/", statements.period_close_view, name="period-close"),
    path("close/reopen/", statements.period_reopen_view, name="period-reopen"),
    path("close/runs/<int:run_id>/override/", statements.reconciliation_override_view, name="run-override"),
    path("statements/<int:statement_id>/", statements.statement_detail, name="statement"),
    path("statements/<int:statement_id>/submit/", statements.statement_submit_view, name="statement-submit"),
    path("statements/<int:statement_id>/return/", statements.statement_return_view, name="statement-return"),
    path("statements/<int:statement_id>/approve/", statements.statement_approve_view, name="statement-approve"),
    path("statements/<int:statement_id>/reopen/", statements.statement_reopen_view, name="statement-reopen"),
    path("statements/<int:statement_id>/lines.csv", statements.statement_csv, name="statement-csv"),
    path("statements/<int:statement_id>/lines.xlsx", statements.statement_xlsx, name="statement-xlsx"),
    path("statements/<int:statement_id>/statement.pdf", statements.statement_pdf, name="statement-pdf"),
    path("statements/<int:statement_id>/lines/<int:line_id>/", statements.statement_line_detail, name="statement-line"),
    path(
        "statements/<int:statement_id>/lines/<int:line_id>/dispute/",
        disputes.dispute_file_view,
        name="dispute-file",
    ),
    path("statements/verify/", signing.pdf_verify_view, name="pdf-verify"),
    path("cost-centers/<str:code>/rollup/", statements.statement_rollup_view, name="statement-rollup"),
    path("disputes/", disputes.disputes_queue, name="disputes"),
    path("disputes/<int:dispute_id>/", disputes.dispute_detail, name="dispute"),
    path("disputes/<int:dispute_id>/evidence/", disputes.dispute_evidence, name="dispute-evidence"),
    # Browsers ask for /favicon.ico whatever a page's <link rel="icon"> says.
    path("favicon.ico", RedirectView.as_view(url=static("favicon.svg"), permanent=True), name="favicon"),
    # allocation's /pricing/unpriced/ comes before pricing's /pricing/.
    path("", include("allocation.urls")),
    path("pricing/", include("pricing.urls")),
    path("api/v1/", include("chargeback.api.urls")),
]

# A path under /api/ that no view takes, or a server error there, answers the API's one
# error shape; pages keep Django's.
handler404 = "chargeback.api.exceptions.api_not_found"
handler500 = "chargeback.api.exceptions.api_server_error"
