"""Pages of mapping versions, mounted at /mappings/."""

from django.urls import path

from . import views_mapping

urlpatterns = [
    path("", views_mapping.mapping_version_list, name="mapping-versions"),
    path("<int:number>/", views_mapping.mapping_version_detail, name="mapping-version"),
    path("<int:number>/preview/", views_mapping.mapping_version_preview, name="mapping-version-preview"),
    path("<int:number>/sign/", views_mapping.mapping_sign_off, name="mapping-version-sign"),
    path("<int:number>/mapping.yaml", views_mapping.mapping_version_export, name="mapping-version-export"),
    path("<int:number>/rules/", views_mapping.mapping_rule_add, name="mapping-rule-add"),
    path("<int:number>/rules/<int:rule_id>/", views_mapping.mapping_rule_edit, name="mapping-rule-edit"),
    path("<int:number>/rules/<int:rule_id>/delete/", views_mapping.mapping_rule_delete, name="mapping-rule-delete"),
    path("<int:number>/rules/<int:rule_id>/move/", views_mapping.mapping_rule_move, name="mapping-rule-move"),
]
