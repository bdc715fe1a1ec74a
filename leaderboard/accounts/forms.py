"""Log-in forms (the site's and the admin's) that refuse to check a password after too many failures."""
import math

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from . import throttle

TOO_MANY_ATTEMPTS = "too_many_attempts"


class ThrottledLogin:
    """Mixin for an AuthenticationForm: failed log-ins are counted (`throttle`); past the limit the form
    is invalid with a message saying when to try again, and the password is not checked."""

    retry_after = 0

    def clean(self):
        username = self.cleaned_data.get("username") or ""
        self.retry_after = throttle.retry_after(self.request, username)
        if self.retry_after:
            minutes = math.ceil(self.retry_after / 60)
            raise forms.ValidationError(
                "Too many failed log-ins for this account or from your address. "
                f"Try again in {minutes} minute{'s' if minutes != 1 else ''}.", code=TOO_MANY_ATTEMPTS)
        try:
            cleaned = super().clean()
        except forms.ValidationError as error:
            if error.code == "invalid_login":
                throttle.record_failure(self.request, username)
            raise
        throttle.forget_username(self.request, username)
        return cleaned


class ThrottledAuthenticationForm(ThrottledLogin, AuthenticationForm):
    pass


class ThrottledAdminAuthenticationForm(ThrottledLogin, AdminAuthenticationForm):
    pass
