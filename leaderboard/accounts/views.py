"""Sign up; log in (Django's view, with failed attempts limited) and log out (Django's own view)."""
from django.contrib.auth import login
from django.contrib.auth import views as auth_views
from django.contrib.auth.forms import UserCreationForm
from django.shortcuts import redirect, render
from django.utils.http import url_has_allowed_host_and_scheme

from .forms import TOO_MANY_ATTEMPTS, ThrottledAuthenticationForm


class LoginView(auth_views.LoginView):
    """Django's log-in; after too many failures the form comes back with the message and status 429."""

    form_class = ThrottledAuthenticationForm
    template_name = "accounts/login.html"

    def form_invalid(self, form):
        response = super().form_invalid(form)
        if form.has_error("__all__", TOO_MANY_ATTEMPTS):
            response.status_code = 429
            response["Retry-After"] = str(form.retry_after)
        return response


def signup(request):
    form = UserCreationForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        user = form.save()
        login(request, user)
        target = request.GET.get("next", "")
        if not url_has_allowed_host_and_scheme(target, allowed_hosts={request.get_host()}):
            target = "submission-list"
        return redirect(target)
    return render(request, "accounts/signup.html", {"form": form})
