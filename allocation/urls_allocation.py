"""Pages of allocation runs, mounted at /allocation/."""

from django.urls import path

from . import views_allocation

urlpatterns = [
    path("", views_allocation.allocation_run_list, name="allocation-runs"),
    path("runs/<int:run_id>/", views_allocation.allocation_run_detail, name="allocation-run"),
    path("runs/<int:run_id>/lines/", views_allocation.allocation_run_lines, name="allocation-run-lines"),
    path("runs/<int:run_id>/lines.csv", views_allocation.allocation_run_lines_csv, name="allocation-run-lines-csv"),
]
