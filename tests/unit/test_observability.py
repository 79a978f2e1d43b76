"""Log lines: batched INFO lines still reach the stream promptly, warnings at once, in order."""

from __future__ import annotations

import io
import json
import logging
import time

from marketplace.lib.observability import BatchingStreamHandler, JsonFormatter, new_request_id


def make_logger(stream: io.StringIO, max_delay: float) -> tuple[logging.Logger, BatchingStreamHandler]:
    handler = BatchingStreamHandler(stream, max_delay=max_delay)
    handler.setFormatter(JsonFormatter())
    logger = logging.getLogger(f"test.batching.{id(stream)}")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    return logger, handler


def test_info_lines_are_written_by_the_flusher_when_the_process_goes_idle() -> None:
    stream = io.StringIO()
    logger, handler = make_logger(stream, max_delay=0.05)
    logger.info("first")
    logger.info("second")
    assert stream.getvalue() == ""  # batched, not one write per line
    deadline = time.monotonic() + 30
    while stream.getvalue().count("\n") < 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["first", "second"]
    handler.close()
    handler.close()  # closing twice (logging.shutdown after a reconfigure) is harmless


def test_a_warning_writes_everything_before_it_at_once_in_order() -> None:
    stream = io.StringIO()
    logger, handler = make_logger(stream, max_delay=60)
    logger.info("queued")
    logger.warning("alarm")
    assert [json.loads(line)["msg"] for line in stream.getvalue().splitlines()] == ["queued", "alarm"]
    logger.info("tail")
    handler.close()
    assert stream.getvalue().splitlines()[-1].endswith('"msg":"tail"}')


def test_request_ids_are_unique_32_hex_characters() -> None:
    ids = {new_request_id() for _ in range(1000)}
    assert len(ids) == 1000
    assert all(len(i) == 32 and int(i, 16) >= 0 for i in ids)


async def test_access_log_masks_the_onboarding_state_in_paths() -> None:
    import logging as _logging

    from marketplace.lib.observability import RequestIdMiddleware

    async def app(scope: dict[str, object], receive: object, send: object) -> None:
        await send({"type": "http.response.start", "status": 303, "headers": []})  # type: ignore[operator]
        await send({"type": "http.response.body", "body": b""})  # type: ignore[operator]

    records: list[_logging.LogRecord] = []

    class Keep(_logging.Handler):
        def emit(self, record: _logging.LogRecord) -> None:
            records.append(record)

    keep = Keep()
    access = _logging.getLogger("marketplace.access")
    access.addHandler(keep)
    access.setLevel(_logging.INFO)
    try:
        state = "0b6f7c0e-8f6e-4f7e-9d43-3d7b6f1c2a55"
        scope = {"type": "http", "method": "GET", "path": f"/sellers/onboarding/{state}/refresh", "headers": []}

        async def send(message: object) -> None:
            return None

        await RequestIdMiddleware(app)(scope, None, send)  # type: ignore[arg-type]
    finally:
        access.removeHandler(keep)
    assert records[-1].__dict__["path"] == "/sellers/onboarding/…/refresh"


def test_uvicorn_lines_go_through_our_json_redacting_handler() -> None:
    """As configured by `marketplace serve`: uvicorn reporting an exception that escaped the app."""
    import subprocess
    import sys

    code = """
import logging, logging.config
from marketplace.lib.observability import uvicorn_log_config
logging.config.dictConfig(uvicorn_log_config("INFO", ["configured-secret-1"]))
try:
    raise RuntimeError("failed with configured-secret-1 and Bearer mkt_abcdefghijklmnopqrstuvwxyz")
except RuntimeError as exc:
    logging.getLogger("uvicorn.error").error("Exception in ASGI application\\n", exc_info=exc)
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True)
    lines = [json.loads(line) for line in done.stderr.splitlines()]
    assert len(lines) == 1
    assert lines[0]["logger"] == "uvicorn.error"
    assert lines[0]["level"] == "error"
    assert "RuntimeError" in lines[0]["exc"]
    assert "configured-secret-1" not in done.stderr
    assert "mkt_abcdefghijklmnopqrstuvwxyz" not in done.stderr


def test_any_log_line_naming_an_onboarding_path_has_its_state_masked() -> None:
    """An unexpected error on the onboarding routes logs its path: the state in it is a credential."""
    from marketplace.lib.observability import RedactingFilter

    state = "7f0c2d5e-1b9a-4c6e-8f43-2a9d7e5b1c08"
    record = logging.LogRecord(
        "marketplace.lib.problems",
        logging.ERROR,
        __file__,
        1,
        "unhandled error on %s %s",
        ("GET", f"/sellers/onboarding/{state}/refresh"),
        None,
    )
    try:
        raise RuntimeError(f"while handling /sellers/onboarding/{state}/return")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    assert state not in record.getMessage()
    assert state not in (record.exc_text or "")
    assert "/sellers/onboarding/…/refresh" in record.getMessage()


def test_guest_order_tokens_are_masked_like_every_other_credential() -> None:
    from marketplace.auth.tokens import mint_order_token
    from marketplace.lib.observability import redact

    token = mint_order_token()
    assert token.startswith("ord_")
    masked = redact(f"X-Order-Token: {token} and Bearer mkt_abcdefghijklmnop")
    assert token not in masked
    assert "mkt_abcdefghijklmnop" not in masked
    # …but not an identifier that merely contains the prefix (a traceback's `record_stripe_state`).
    assert redact("in record_stripe_state") == "in record_stripe_state"


def test_email_addresses_are_masked_in_messages_exceptions_and_fields_but_identifiers_are_not() -> None:
    from marketplace.lib.observability import JsonFormatter, RedactingFilter, redact

    record = logging.LogRecord(
        "marketplace.outbox",
        logging.INFO,
        __file__,
        1,
        "notify payload=%s",
        ('{"email": "jane.doe+shop@example.co.uk"}',),
        None,
    )
    record.__dict__["path"] = "/buyers/Jöhn@exämple.de"
    try:
        raise RuntimeError("duplicate key: Key (email)=(guest@example.com) already exists")
    except RuntimeError:
        import sys

        record.exc_info = sys.exc_info()
    RedactingFilter().filter(record)
    line = JsonFormatter().format(record)
    for address in ("jane.doe+shop@example.co.uk", "Jöhn@exämple.de", "guest@example.com", "jane.doe", "guest@"):
        assert address not in line
    assert '"email": "j***@example.co.uk"' in record.getMessage()  # still says there was one, and where
    assert json.loads(line)["path"] == "/buyers/J***@exämple.de"
    assert "g***@example.com" in (record.exc_text or "")
    # Identifiers, decorators, dotted names and ids with no address in them are left as they are.
    for text in (
        "in record_stripe_state at webhooks/handlers/refunds.py:52",
        "    @handles(*REFUND_EVENTS, endpoints={'platform', 'connect'})",
        "matrix a@b.T and user@localhost",
        "order 8f14e45f-ceea-467f-a0e6-00f1b2c3d4e5 for seller.display_name",
    ):
        assert redact(text) == text
