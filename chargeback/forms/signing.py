"""The form a PDF to verify is uploaded with."""

from django import forms
from django.conf import settings
from django.template.defaultfilters import filesizeformat

__all__ = ["PdfVerifyForm"]


class PdfVerifyForm(forms.Form):
    pdf = forms.FileField(
        label="Statement PDF",
        help_text="A signed statement PDF, as it was sent to you",
        widget=forms.ClearableFileInput(attrs={"accept": "application/pdf,.pdf"}),
    )

    def clean_pdf(self):
        uploaded = self.cleaned_data["pdf"]
        limit = settings.CHARGEBACK_VERIFY_MAX_BYTES
        if uploaded.size > limit:
            raise forms.ValidationError(
                f"{uploaded.name} is {filesizeformat(uploaded.size)}; the limit is {filesizeformat(limit)}. "
                "A statement PDF is far smaller: is this the right file?",
                code="file_too_large",
            )
        return uploaded
