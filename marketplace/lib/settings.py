"""Settings read once from the environment, validated at start, secrets masked everywhere.

Every problem found is reported in one `SettingsError`, one line per problem, so an operator fixes
the whole environment in one go instead of one variable per restart.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Literal
from urllib.parse import urlsplit

from connect.fees import FeePolicy, fee_problems, parse_per_currency
from connect.profiles import ACCOUNT_PROFILES, AccountProfile
from marketplace.lib.durable import budget

AppEnv = Literal["development", "test", "production"]

APP_ENVS: tuple[AppEnv, ...] = ("development", "test", "production")
LIVE_KEY_PREFIXES = ("sk_live_", "rk_live_")
# The budget order every webhook job keeps is durable work's (`marketplace.lib.durable.budget`): one
# Stripe call < the handler's timeout (`budget.work_timeout` of EVENT_LEASE_SECONDS) < the lease < arq's
# job timeout (`budget.job_timeout`); `budget_problems` refuses settings that break it.
STRIPE_SDK_MAX_RETRY_SLEEP_SECONDS = 5.0  # stripe-python's HTTPClient.MAX_DELAY between retries
TEST_KEY_PREFIXES = ("sk_test_", "rk_test_")


class Secret:
    """A string that never shows itself in repr, str or f-strings; call `.reveal()` to use it."""

    __slots__ = ("_value",)

    def __init__(self, value: str) -> None:
        self._value = value

    def reveal(self) -> str:
        return self._value

    def __repr__(self) -> str:
        return "Secret('**********')" if self._value else "Secret('')"

    __str__ = __repr__

    def __format__(self, format_spec: str) -> str:
        return repr(self)

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Secret) and other._value == self._value

    def __hash__(self) -> int:
        return hash(self._value)

    def __bool__(self) -> bool:
        return bool(self._value)


class SettingsError(Exception):
    """The environment is not a valid configuration; `problems` lists every reason."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("invalid configuration:\n" + "\n".join(f"  - {p}" for p in problems))


DEFAULT_FEE_BPS = 1000
# The platform fee policy's per-currency fields (connect.fees.FeePolicy) and the variables they come from.
FEE_VARIABLES: Mapping[str, str] = {
    "basis_points": "PLATFORM_FEE_BPS",
    "fixed": "PLATFORM_FEE_FIXED",
    "minimum": "PLATFORM_FEE_MINIMUM",
    "maximum": "PLATFORM_FEE_MAXIMUM",
}


@dataclass(frozen=True)
class Settings:
    app_env: AppEnv
    database_url: Secret
    redis_url: Secret
    stripe_secret_key: Secret
    stripe_api_base: str | None
    webhook_secrets_platform: tuple[Secret, ...]
    webhook_secrets_connect: tuple[Secret, ...]
    public_base_url: str
    seller_return_url: str
    allowed_redirect_origins: tuple[str, ...]
    default_account_profile: AccountProfile = "platform_managed"
    allow_seller_account_profile: bool = False
    fees: FeePolicy = field(default_factory=lambda: FeePolicy(basis_points=DEFAULT_FEE_BPS))
    webhook_tolerance_seconds: int = 300
    webhook_max_body_bytes: int = 512 * 1024
    event_max_attempts: int = 8
    event_retention_days: int = 30
    event_lease_seconds: int = 60
    stripe_max_network_retries: int = 2
    stripe_timeout_seconds: float = 10.0
    worker_max_jobs: int = 20
    worker_db_pool_size: int = 22
    log_level: str = "INFO"
    # Checkout (docs/charges.md): where Stripe sends the buyer back, and the session's terms.
    checkout_success_url: str = ""  # carries ?order_id=…&session_id={CHECKOUT_SESSION_ID} when sent
    checkout_cancel_url: str = ""
    checkout_expires_minutes: int = 60  # 31 min (Stripe's 30, and a minute to reach it) to 24 h
    checkout_allow_promotion_codes: bool = False
    checkout_on_behalf_of: bool = False  # destination charges: the seller is the merchant of record
    checkout_reuse_seconds: int = 600  # a repeated POST /checkout of the same cart returns its order
    # Rate limits (per minute) of the routes that write to Stripe or read from it for anyone: per buyer
    # (bearer token) or, for a guest, per client address (docs/orders.md, "Limits").
    checkout_limit_per_minute: int = 30
    verify_limit_per_minute: int = 60
    shop_enabled: bool = False  # the /shop pages (docs/pages.md); on by default outside production

    @property
    def stripe_call_budget_seconds(self) -> float:
        """The longest one Stripe call can take: every attempt timing out, plus the SDK's sleeps between."""
        retries = self.stripe_max_network_retries
        return (1 + retries) * self.stripe_timeout_seconds + retries * STRIPE_SDK_MAX_RETRY_SLEEP_SECONDS

    @property
    def handler_timeout_seconds(self) -> float:
        """A webhook handler is cancelled after this: before its lease runs out, so no other worker
        can take over an event still running here."""
        return budget.work_timeout(self.event_lease_seconds)

    @property
    def job_timeout_seconds(self) -> int:
        """arq's timeout for one event's job: the lease plus time to record the outcome."""
        return budget.job_timeout(self.event_lease_seconds)

    @property
    def livemode(self) -> bool:
        """Whether the configured key is a live-mode key (events must then have livemode=true)."""
        return self.stripe_secret_key.reveal().startswith(LIVE_KEY_PREFIXES)

    @property
    def uses_sandbox(self) -> bool:
        return self.stripe_api_base is not None

    def secret_values(self) -> list[str]:
        """Every secret string, for the log redactor."""
        values = [self.stripe_secret_key.reveal()]
        values += [s.reveal() for s in self.webhook_secrets_platform + self.webhook_secrets_connect]
        for url in (self.database_url.reveal(), self.redis_url.reveal()):
            password = urlsplit(url).password
            if password:
                values.append(password)
        return [v for v in values if len(v) >= 6]


def _split_secrets(raw: str) -> tuple[Secret, ...]:
    return tuple(Secret(part.strip()) for part in raw.split(",") if part.strip())


def _origin(url: str) -> str | None:
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}"


def _int(env: Mapping[str, str], name: str, default: int, problems: list[str], minimum: int = 0) -> int:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        problems.append(f"{name} must be an integer, got {raw!r}")
        return default
    if value < minimum:
        problems.append(f"{name} must be at least {minimum}, got {value}")
    return value


def _float(env: Mapping[str, str], name: str, default: float, problems: list[str], minimum: float) -> float:
    raw = env.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        problems.append(f"{name} must be a number, got {raw!r}")
        return default
    if not value >= minimum or value == float("inf"):
        problems.append(f"{name} must be a finite number of at least {minimum}, got {raw}")
        return default
    return value


def _bool(env: Mapping[str, str], name: str, default: bool, problems: list[str]) -> bool:
    raw = env.get(name, "").strip().lower()
    if not raw:
        return default
    if raw not in ("true", "false", "1", "0", "yes", "no"):
        problems.append(f"{name} must be true or false")
        return default
    return raw in ("true", "1", "yes")


def budget_problems(settings: Settings) -> list[str]:
    """Why the timeouts break the budget order (`marketplace.lib.durable.budget`); empty when they keep it."""
    budget = settings.stripe_call_budget_seconds
    handler = settings.handler_timeout_seconds
    if budget < handler:
        return []
    return [
        f"one Stripe call may take {budget:g} s ((1 + STRIPE_MAX_NETWORK_RETRIES={settings.stripe_max_network_retries})"
        f" * STRIPE_TIMEOUT_SECONDS={settings.stripe_timeout_seconds:g} s + "
        f"{STRIPE_SDK_MAX_RETRY_SLEEP_SECONDS:g} s between retries), which does not fit under the webhook "
        f"handler's timeout of {handler:g} s (EVENT_LEASE_SECONDS={settings.event_lease_seconds} minus a "
        "margin to record the outcome): lower STRIPE_TIMEOUT_SECONDS or the retries, or raise the lease"
    ]


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate settings; raise `SettingsError` listing every problem."""
    env = os.environ if env is None else env
    problems: list[str] = []

    app_env = env.get("APP_ENV", "development")
    if app_env not in APP_ENVS:
        problems.append(f"APP_ENV must be one of {', '.join(APP_ENVS)}, got {app_env!r}")
        app_env = "development"

    database_url = env.get("DATABASE_URL", "")
    if not database_url:
        problems.append("DATABASE_URL is required (postgresql://user:pass@host:5432/dbname)")
    elif urlsplit(database_url).scheme not in ("postgres", "postgresql"):
        problems.append("DATABASE_URL must be a postgresql:// URL")

    redis_url = env.get("REDIS_URL", "")
    if not redis_url:
        problems.append("REDIS_URL is required (redis://host:6379/0)")
    elif urlsplit(redis_url).scheme not in ("redis", "rediss", "unix"):
        problems.append("REDIS_URL must be a redis://, rediss:// or unix:// URL")

    key = env.get("STRIPE_SECRET_KEY", "")
    if not key:
        problems.append("STRIPE_SECRET_KEY is required (sk_test_… outside production)")
    elif not key.startswith(LIVE_KEY_PREFIXES + TEST_KEY_PREFIXES):
        problems.append("STRIPE_SECRET_KEY must start with sk_test_, rk_test_, sk_live_ or rk_live_")
    elif key.startswith(LIVE_KEY_PREFIXES) and app_env != "production":
        problems.append(f"a live Stripe key is refused when APP_ENV={app_env}; use a test key")

    api_base = env.get("STRIPE_API_BASE") or None
    if api_base is not None:
        if _origin(api_base) is None:
            problems.append("STRIPE_API_BASE must be an http(s) URL")
        if app_env == "production":
            problems.append("STRIPE_API_BASE (the Stripe sandbox) is refused when APP_ENV=production")

    platform_secrets = _split_secrets(env.get("STRIPE_WEBHOOK_SECRET_PLATFORM", ""))
    connect_secrets = _split_secrets(env.get("STRIPE_WEBHOOK_SECRET_CONNECT", ""))
    for name, secrets in (
        ("STRIPE_WEBHOOK_SECRET_PLATFORM", platform_secrets),
        ("STRIPE_WEBHOOK_SECRET_CONNECT", connect_secrets),
    ):
        if not secrets and app_env == "production":
            problems.append(f"{name} is required in production (comma-separated for rotation)")
        for secret in secrets:
            if not secret.reveal().startswith("whsec_"):
                problems.append(f"{name} entries must start with whsec_")
                break

    public_base_url = env.get("PUBLIC_BASE_URL", "http://127.0.0.1:" + env.get("PORT", "8000")).rstrip("/")
    if _origin(public_base_url) is None:
        problems.append("PUBLIC_BASE_URL must be an http(s) URL")
    seller_return_url = env.get("SELLER_RETURN_URL", public_base_url + "/shop/seller")
    if _origin(seller_return_url) is None:
        problems.append("SELLER_RETURN_URL must be an http(s) URL")

    origins: list[str] = []
    for raw in env.get("ALLOWED_REDIRECT_ORIGINS", "").split(","):
        if not raw.strip():
            continue
        origin = _origin(raw.strip())
        if origin is None:
            problems.append(f"ALLOWED_REDIRECT_ORIGINS entry {raw.strip()!r} is not an http(s) origin")
        else:
            origins.append(origin)
    for url in (public_base_url, seller_return_url):
        origin = _origin(url)
        if origin and origin not in origins:
            origins.append(origin)
    if app_env == "production" and any(o.startswith("http://") for o in origins):
        problems.append("redirect origins must use https in production")

    checkout_urls: dict[str, str] = {}
    for name, path in (("CHECKOUT_SUCCESS_URL", "/shop/success"), ("CHECKOUT_CANCEL_URL", "/shop/cancel")):
        url = env.get(name, public_base_url + path)
        parts = urlsplit(url)
        if _origin(url) is None or parts.query or parts.fragment:
            problems.append(f"{name} must be an http(s) URL without a query or fragment")
        elif _origin(url) not in origins:
            problems.append(f"{name} must be on one of the allowed redirect origins ({', '.join(origins)})")
        checkout_urls[name] = url
    # Stripe wants expires_at 30 min to 24 h after the session's creation, which comes a little after the
    # order (and its expires_at) is written, and again on a retry: one minute of margin at the short end.
    checkout_expires = _int(env, "CHECKOUT_EXPIRES_MINUTES", 60, problems, minimum=31)
    if checkout_expires > 24 * 60:
        problems.append("CHECKOUT_EXPIRES_MINUTES must be at most 1440 (Stripe's 24 hours)")

    profile = env.get("DEFAULT_ACCOUNT_PROFILE", "platform_managed")
    if profile not in ACCOUNT_PROFILES:
        problems.append(f"DEFAULT_ACCOUNT_PROFILE must be one of {', '.join(ACCOUNT_PROFILES)}")
        profile = "platform_managed"

    allow_choice = env.get("ALLOW_SELLER_ACCOUNT_PROFILE", "false").lower()
    if allow_choice not in ("true", "false", "1", "0", "yes", "no"):
        problems.append("ALLOW_SELLER_ACCOUNT_PROFILE must be true or false")

    fee_bps = _int(env, "PLATFORM_FEE_BPS", DEFAULT_FEE_BPS, problems)  # a negative one is reported here
    fee_amounts: dict[str, dict[str, int]] = {}
    for attr in ("fixed", "minimum", "maximum"):
        try:
            fee_amounts[attr] = parse_per_currency(env.get(FEE_VARIABLES[attr], ""), FEE_VARIABLES[attr])
        except ValueError as exc:
            problems.append(str(exc))
            fee_amounts[attr] = {}
    fee_policy_problems = fee_problems(basis_points=fee_bps if fee_bps >= 0 else None, **fee_amounts)
    problems += [f"{FEE_VARIABLES[attr]}: {message}" for attr, message in fee_policy_problems]
    fees = (
        FeePolicy(
            basis_points=fee_bps,
            fixed=fee_amounts["fixed"],
            minimum=fee_amounts["minimum"],
            maximum=fee_amounts["maximum"],
        )
        if fee_bps >= 0 and not fee_policy_problems
        else FeePolicy(basis_points=DEFAULT_FEE_BPS)  # never used: the problems above are raised
    )

    stripe_timeout = _float(env, "STRIPE_TIMEOUT_SECONDS", 10.0, problems, minimum=0.5)
    max_jobs = _int(env, "WORKER_MAX_JOBS", 20, problems, minimum=1)
    # Each job may hold a connection for one statement at a time; the crons (sweeper, outbox) two more.
    pool_size = _int(env, "WORKER_DB_POOL_SIZE", max_jobs + 2, problems, minimum=1)
    if pool_size < max_jobs:
        problems.append(
            f"WORKER_DB_POOL_SIZE ({pool_size}) must be at least WORKER_MAX_JOBS ({max_jobs}): "
            "jobs would wait for a connection instead of running"
        )

    log_level = env.get("LOG_LEVEL", "INFO").upper()
    if log_level not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        problems.append("LOG_LEVEL must be DEBUG, INFO, WARNING or ERROR")

    settings = Settings(
        app_env=app_env,  # type: ignore[arg-type]  # narrowed by the membership check above
        database_url=Secret(database_url),
        redis_url=Secret(redis_url),
        stripe_secret_key=Secret(key),
        stripe_api_base=api_base.rstrip("/") if api_base else None,
        webhook_secrets_platform=platform_secrets,
        webhook_secrets_connect=connect_secrets,
        public_base_url=public_base_url,
        seller_return_url=seller_return_url,
        allowed_redirect_origins=tuple(origins),
        default_account_profile=profile,  # type: ignore[arg-type]
        allow_seller_account_profile=allow_choice in ("true", "1", "yes"),
        fees=fees,
        webhook_tolerance_seconds=_int(env, "WEBHOOK_TOLERANCE_SECONDS", 300, problems, minimum=1),
        webhook_max_body_bytes=_int(env, "WEBHOOK_MAX_BODY_BYTES", 512 * 1024, problems, minimum=1024),
        event_max_attempts=_int(env, "EVENT_MAX_ATTEMPTS", 8, problems, minimum=1),
        event_retention_days=_int(env, "EVENT_RETENTION_DAYS", 30, problems, minimum=1),
        event_lease_seconds=_int(env, "EVENT_LEASE_SECONDS", 60, problems, minimum=5),
        stripe_max_network_retries=_int(env, "STRIPE_MAX_NETWORK_RETRIES", 2, problems),
        stripe_timeout_seconds=stripe_timeout,
        worker_max_jobs=max_jobs,
        worker_db_pool_size=pool_size,
        log_level=log_level,
        checkout_success_url=checkout_urls["CHECKOUT_SUCCESS_URL"],
        checkout_cancel_url=checkout_urls["CHECKOUT_CANCEL_URL"],
        checkout_expires_minutes=checkout_expires,
        checkout_allow_promotion_codes=_bool(env, "CHECKOUT_ALLOW_PROMOTION_CODES", False, problems),
        checkout_on_behalf_of=_bool(env, "CHECKOUT_ON_BEHALF_OF", False, problems),
        checkout_reuse_seconds=_int(env, "CHECKOUT_REUSE_SECONDS", 600, problems, minimum=0),
        checkout_limit_per_minute=_int(env, "CHECKOUT_LIMIT_PER_MINUTE", 30, problems, minimum=1),
        verify_limit_per_minute=_int(env, "VERIFY_LIMIT_PER_MINUTE", 60, problems, minimum=1),
        shop_enabled=_bool(env, "SHOP_ENABLED", app_env != "production", problems),
    )
    problems += budget_problems(settings)
    problems += page_problems(settings)
    if problems:
        raise SettingsError(problems)
    return settings


def page_problems(settings: Settings) -> list[str]:
    """In production, a buyer or seller sent to a page this API does not serve (the default URLs are the
    /shop pages, which production turns off): refused at start rather than found after a payment."""
    if settings.shop_enabled or settings.app_env != "production":
        return []
    shop = settings.public_base_url.rstrip("/") + "/shop/"
    named = {
        "CHECKOUT_SUCCESS_URL": settings.checkout_success_url,
        "CHECKOUT_CANCEL_URL": settings.checkout_cancel_url,
        "SELLER_RETURN_URL": settings.seller_return_url,
    }
    return [
        f"{name}={url} is a /shop page, and SHOP_ENABLED is off: set {name} to your frontend's page"
        f" (or SHOP_ENABLED=true)"
        for name, url in named.items()
        if url.startswith(shop)
    ]


@lru_cache(maxsize=1)
def get_settings() -> Settings:
    """The process-wide settings, read once."""
    return load_settings()
