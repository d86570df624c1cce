"""The page where anyone signed in checks a statement PDF: its signature, its signer and
the approved statement it carries. Thin: `pdf_verify` does the checking, within what the
visitor may see."""

from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_http_methods

from allocation.access import cost_center_scope
from chargeback.forms.signing import PdfVerifyForm
from chargeback.services.signing import pdf_verify

__all__ = ["pdf_verify_view"]


@require_http_methods(["GET", "POST"])
def pdf_verify_view(request: HttpRequest) -> HttpResponse:
    # Bound on every POST: a POST without the file is an error to show, not a blank form.
    form = PdfVerifyForm(request.POST, request.FILES) if request.method == "POST" else PdfVerifyForm()
    verification, file_name, status = None, "", 200
    if request.method == "POST":
        if form.is_valid():
            uploaded = form.cleaned_data["pdf"]
            file_name = uploaded.name
            verification = pdf_verify(uploaded.read(), scope=cost_center_scope(request.user))
            form = PdfVerifyForm()  # the next file starts from an empty form
        else:
            status = 400
    context = {"form": form, "verification": verification, "file_name": file_name}
    return render(request, "chargeback/pdf_verify.html", context, status=status)
