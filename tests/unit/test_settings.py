"""Settings validation: every problem reported, live keys and the sandbox refused where they must be."""

from __future__ import annotations

import logging

import pytest

from marketplace.lib.observability import RedactingFilter
from marketplace.lib.settings import Secret, SettingsError, load_settings

GOOD = {
    "APP_ENV": "development",
    "DATABASE_URL": "postgresql://app:pg-password-123@db:5432/market",
    "REDIS_URL": "redis://:redis-password-9@cache:6379/0",
    "STRIPE_SECRET_KEY": "sk_test_51abcdefSECRET",
    "STRIPE_WEBHOOK_SECRET_PLATFORM": "whsec_old, whsec_new",
    "STRIPE_WEBHOOK_SECRET_CONNECT": "whsec_connect",
}


def test_valid_environment_loads_with_rotation_lists() -> None:
    settings = load_settings(GOOD)
    assert settings.app_env == "development"
    assert [s.reveal() for s in settings.webhook_secrets_platform] == ["whsec_old", "whsec_new"]
    assert settings.livemode is False
    assert settings.stripe_api_base is None


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({"APP_ENV": "staging", "REDIS_URL": "http://x", "PLATFORM_FEE_BPS": "lots"})
    text = str(info.value)
    for expected in ("APP_ENV", "DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "PLATFORM_FEE_BPS"):
        assert expected in text
    assert len(info.value.problems) >= 5


@pytest.mark.parametrize("key", ["sk_live_abc123", "rk_live_abc123"])
@pytest.mark.parametrize("env", ["development", "test"])
def test_live_key_refused_outside_production(key: str, env: str) -> None:
    with pytest.raises(SettingsError, match="live Stripe key is refused"):
        load_settings({**GOOD, "APP_ENV": env, "STRIPE_SECRET_KEY": key})


def test_live_key_accepted_in_production_and_sets_livemode() -> None:
    settings = load_settings(
        {
            **GOOD,
            "APP_ENV": "production",
            "STRIPE_SECRET_KEY": "sk_live_abc",
            "PUBLIC_BASE_URL": "https://m.example",
            **FRONTEND,
        }
    )
    assert settings.livemode is True


def test_production_without_the_pages_needs_the_frontends_urls() -> None:
    env = {**GOOD, "APP_ENV": "production", "PUBLIC_BASE_URL": "https://m.example"}
    with pytest.raises(SettingsError) as info:
        load_settings(env)
    for name in ("CHECKOUT_SUCCESS_URL", "CHECKOUT_CANCEL_URL", "SELLER_RETURN_URL"):
        assert f"{name}=https://m.example/shop/" in str(info.value)
    assert load_settings({**env, "SHOP_ENABLED": "true"}).shop_enabled is True
    assert load_settings({**env, **FRONTEND}).checkout_success_url == FRONTEND["CHECKOUT_SUCCESS_URL"]


# A production frontend's pages (the /shop pages are off in production).
FRONTEND = {
    "CHECKOUT_SUCCESS_URL": "https://m.example/thanks",
    "CHECKOUT_CANCEL_URL": "https://m.example/cart",
    "SELLER_RETURN_URL": "https://m.example/sell",
}


def test_sandbox_refused_in_production() -> None:
    with pytest.raises(SettingsError, match="sandbox"):
        load_settings(
            {
                **GOOD,
                "APP_ENV": "production",
                "STRIPE_API_BASE": "http://127.0.0.1:12111",
                "PUBLIC_BASE_URL": "https://m.example",
            }
        )


def test_production_requires_webhook_secrets_and_https_origins() -> None:
    env = {k: v for k, v in GOOD.items() if not k.startswith("STRIPE_WEBHOOK")}
    with pytest.raises(SettingsError) as info:
        load_settings({**env, "APP_ENV": "production"})
    text = str(info.value)
    assert "STRIPE_WEBHOOK_SECRET_PLATFORM is required" in text
    assert "STRIPE_WEBHOOK_SECRET_CONNECT is required" in text
    assert "https" in text


def test_webhook_secret_must_look_like_one() -> None:
    with pytest.raises(SettingsError, match="whsec_"):
        load_settings({**GOOD, "STRIPE_WEBHOOK_SECRET_CONNECT": "not-a-secret"})


def test_secrets_never_appear_in_repr() -> None:
    settings = load_settings(GOOD)
    text = repr(settings) + str(settings) + f"{settings.stripe_secret_key}"
    for secret in (
        "sk_test_51abcdefSECRET",
        "whsec_old",
        "whsec_connect",
        "pg-password-123",
        "redis-password-9",
    ):
        assert secret not in text
    assert repr(Secret("x")) == "Secret('**********')"


def test_log_lines_are_redacted(caplog: pytest.LogCaptureFixture) -> None:
    settings = load_settings(GOOD)
    record = logging.LogRecord(
        "t", logging.INFO, __file__, 1, "key=%s db=%s header=Bearer mkt_abcdefghijklmnop", None, None
    )
    record.args = (settings.stripe_secret_key.reveal(), settings.database_url.reveal())
    RedactingFilter(settings.secret_values()).filter(record)
    assert "sk_test_51abcdefSECRET" not in record.msg
    assert "pg-password-123" not in record.msg
    assert "mkt_abcdefghijklmnop" not in record.msg
    assert "**********" in record.msg


def test_redirect_origins_include_public_and_seller_pages() -> None:
    settings = load_settings(
        {
            **GOOD,
            "PUBLIC_BASE_URL": "http://api.local:8000",
            "SELLER_RETURN_URL": "http://shop.local/me",
            "ALLOWED_REDIRECT_ORIGINS": "http://front.local:3000",
        }
    )
    assert set(settings.allowed_redirect_origins) == {
        "http://front.local:3000",
        "http://api.local:8000",
        "http://shop.local",
    }


def test_default_budgets_keep_their_order() -> None:
    settings = load_settings(GOOD)
    assert settings.stripe_call_budget_seconds < settings.handler_timeout_seconds
    assert settings.handler_timeout_seconds < settings.event_lease_seconds < settings.job_timeout_seconds
    assert settings.worker_db_pool_size >= settings.worker_max_jobs


@pytest.mark.parametrize(
    "env",
    [
        {"STRIPE_TIMEOUT_SECONDS": "30"},  # 3 attempts x 30 s + sleeps: 100 s, over a 55 s handler timeout
        {"STRIPE_MAX_NETWORK_RETRIES": "5"},  # 6 x 10 s + 25 s
        {"EVENT_LEASE_SECONDS": "30"},  # 40 s budget, 25 s handler timeout
    ],
)
def test_a_stripe_call_that_outlasts_the_handler_timeout_refuses_to_start(env: dict[str, str]) -> None:
    with pytest.raises(SettingsError) as info:
        load_settings({**GOOD, **env})
    assert any("does not fit under the webhook handler's timeout" in p for p in info.value.problems)


def test_a_worker_pool_smaller_than_its_jobs_refuses_to_start() -> None:
    with pytest.raises(SettingsError, match="WORKER_DB_POOL_SIZE"):
        load_settings({**GOOD, "WORKER_MAX_JOBS": "20", "WORKER_DB_POOL_SIZE": "5"})
    assert load_settings({**GOOD, "WORKER_MAX_JOBS": "8"}).worker_db_pool_size == 10


@pytest.mark.parametrize("raw", ["nan", "inf", "-1", "0.1", "soon"])
def test_stripe_timeout_must_be_a_sane_number(raw: str) -> None:
    with pytest.raises(SettingsError, match="STRIPE_TIMEOUT_SECONDS"):
        load_settings({**GOOD, "STRIPE_TIMEOUT_SECONDS": raw})
