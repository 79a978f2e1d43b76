"""The security headers of every `/shop` response (docs/pages.md, "Security headers").

The pages load nothing but their own origin's files: no inline script or style, no third party. They
leave for Stripe (hosted Checkout, hosted onboarding) by setting `location`, which CSP does not govern,
so no Stripe origin appears here; they never submit a form natively (every form is handled by script
calling the JSON API), so `form-action` is `'none'`. Trusted Types with no policy makes every
string-to-HTML sink (`innerHTML`, `document.write`, …) throw: data reaches the page as text only.
"""

from __future__ import annotations

from litestar.datastructures import ResponseHeader

CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'self'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self'",
        "font-src 'self'",
        "connect-src 'self'",
        "object-src 'none'",
        "base-uri 'none'",
        "form-action 'none'",
        "frame-ancestors 'none'",
        "require-trusted-types-for 'script'",
        "trusted-types 'none'",
    ]
)

SECURITY_HEADERS: dict[str, str] = {
    "Content-Security-Policy": CONTENT_SECURITY_POLICY,
    # Stricter than strict-origin-when-cross-origin: nothing at all leaves for another origin (the success
    # page's URL carries the order and session ids); our own API gets the full URL and logs paths only.
    "Referrer-Policy": "same-origin",
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",  # frame-ancestors, for browsers that predate it
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Resource-Policy": "same-origin",
    "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
    "Cache-Control": "no-cache",  # revalidate: a page never runs yesterday's script against today's API
}


def security_headers() -> list[ResponseHeader]:
    return [ResponseHeader(name=name, value=value) for name, value in SECURITY_HEADERS.items()]
