"""Pages of the allocation app, by area: the usage ledger, the organization, rating,
mapping versions and allocation runs. Mounted at the site root; paths keep the
prefixes users know (/usage/, /mappings/, /allocation/, /pricing/unpriced/)."""

from django.urls import path

from allocation.views import ledger, mapping, org, rating, runs

urlpatterns = [
    # ledger: usage and its ingestion
    path("usage/", ledger.usage_overview, name="usage-overview"),
    path("usage/batches/", ledger.usage_batch_list, name="usage-batches"),
    path("usage/batches/<int:batch_id>/", ledger.usage_batch_detail, name="usage-batch"),
    path(
        "usage/batches/<int:batch_id>/rejections.csv",
        ledger.usage_batch_rejections_csv,
        name="usage-batch-rejections",
    ),
    # org
    path("usage/organization/", org.organization, name="organization"),
    # rating: with the pricing pages for users, so before `pricing/` in the site's URLs
    path("pricing/unpriced/", rating.unpriced_usage_report, name="unpriced-usage"),
    # mapping versions
    path("mappings/", mapping.mapping_version_list, name="mapping-versions"),
    path("mappings/<int:number>/", mapping.mapping_version_detail, name="mapping-version"),
    path("mappings/<int:number>/preview/", mapping.mapping_version_preview, name="mapping-version-preview"),
    path("mappings/<int:number>/sign/", mapping.mapping_sign_off, name="mapping-version-sign"),
    path("mappings/<int:number>/mapping.yaml", mapping.mapping_version_export, name="mapping-version-export"),
    path("mappings/<int:number>/rules/", mapping.mapping_rule_add, name="mapping-rule-add"),
    path("mappings/<int:number>/rules/<int:rule_id>/", mapping.mapping_rule_edit, name="mapping-rule-edit"),
    path("mappings/<int:number>/rules/<int:rule_id>/delete/", mapping.mapping_rule_delete, name="mapping-rule-delete"),
    path("mappings/<int:number>/rules/<int:rule_id>/move/", mapping.mapping_rule_move, name="mapping-rule-move"),
    # allocation runs
    path("allocation/", runs.allocation_run_list, name="allocation-runs"),
    path("allocation/runs/<int:run_id>/", runs.allocation_run_detail, name="allocation-run"),
    path("allocation/runs/<int:run_id>/lines/", runs.allocation_run_lines, name="allocation-run-lines"),
    path("allocation/runs/<int:run_id>/lines.csv", runs.allocation_run_lines_csv, name="allocation-run-lines-csv"),
]
