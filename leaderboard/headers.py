"""The response header Django 5.2 does not set itself: Content-Security-Policy (settings: SHELFMARK_CSP).

Django's SecurityMiddleware sets X-Content-Type-Options, Referrer-Policy, Cross-Origin-Opener-Policy and,
behind HTTPS, Strict-Transport-Security; XFrameOptionsMiddleware sets X-Frame-Options.
"""
from django.conf import settings


def content_security_policy(directives: dict[str, list[str]]) -> str:
    return "; ".join(" ".join([name, *sources]) for name, sources in directives.items())


class ContentSecurityPolicyMiddleware:
    def __init__(self, get_response):
        self.get_response = get_response

    def __call__(self, request):
        response = self.get_response(request)
        response.headers.setdefault("Content-Security-Policy", content_security_policy(settings.SHELFMARK_CSP))
        return response
