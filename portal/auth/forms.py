"""The sign-in forms (the portal's and the admin's): Django's, with the password checked behind the
throttle on password guessing."""

from __future__ import annotations

from django import forms
from django.contrib.admin.forms import AdminAuthenticationForm
from django.contrib.auth.forms import AuthenticationForm

from .throttle import SignIn, SignInThrottled

THROTTLED = "throttled"  # the error code of a refusal by the throttle


class _ThrottledSignIn:
    def clean(self):
        username = self.cleaned_data.get("username")
        password = self.cleaned_data.get("password")
        if username is not None and password:
            try:
                self.user_cache = SignIn(self.request, username=username).authenticate(password)
            except SignInThrottled as exc:
                minutes = max(1, round(exc.retry_after / 60))
                raise forms.ValidationError(
                    f"Too many failed sign-ins. Try again in {minutes} minute{'s' if minutes > 1 else ''}.",
                    code=THROTTLED,
                ) from None
            if self.user_cache is None:
                raise self.get_invalid_login_error()
            self.confirm_login_allowed(self.user_cache)
        return self.cleaned_data


class SignInForm(_ThrottledSignIn, AuthenticationForm):
    """The portal's sign-in."""


class AdminSignInForm(_ThrottledSignIn, AdminAuthenticationForm):
    """The admin's sign-in (staff only, as Django's)."""
